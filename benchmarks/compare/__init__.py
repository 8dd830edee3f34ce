"""compare.py's parts (docs/benchmarks.md): plan (patterns x seeds x learning rates -> run configs), run (train
the planned runs, one after another or several processes at once), report (read run folders back, summarise,
markdown and CSV tables) and plots (PNG figures of a summary)."""


class CompareError(ValueError):
    """A problem with the command line, reported without a traceback."""
