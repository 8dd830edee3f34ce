"""Run one experiment across mixer patterns (x seeds x learning rates), then tabulate and plot the local run logs.

    python compare.py experiment=mqar_sweep_cpu --patterns attention prism prism_l1 gdn gla mamba2 ttt_mlp \\
        --seeds 0 1 --lrs 1e-3 3e-3 -- trainer.max_steps=300
    python compare.py experiment=prism_probes --vary data.task=parity,mux --patterns '[attention,attention]' \\
        'prism_l1:[prism,prism] model.mixers.prism.steps=1'
    python compare.py --from-runs runs/compare/mqar_sweep_cpu-20250101-120000   # only re-make table and plots

A pattern is one shell word: ``[LABEL:]SPEC [key=value ...]``. SPEC is a layer list ``[a,b,...]`` (the whole
stack: model.repeat is set to 1) or the name of a mixer config (configs/mixer/NAME.yaml, applied as mixer=NAME,
whose depth follows the experiment's model.repeat); the key=value overrides apply to that pattern only. The label
names the pattern in tables, plots, run names and W&B tags (default: the mixer name, or the layers joined by -).

Config overrides (``experiment=...``, ``key=value``) go before the options or after ``--``; they apply to every run.
Runs go through train.run, one after another (or --jobs N at once, each in its own process), into
<out>/runs/<experiment>/<label>.lr<lr>.s<seed>-<group hash>, each
logged to W&B (when logging.wandb) in one group (--group, default the output folder's name) with tags
``compare``, ``pattern:<label>``, ``seed:<s>``, ``lr:<lr>`` (and ``<vary key>:<value>``), with config.compare =
{label, pattern, setting, vary_key, seed, lr}, the label as job type, and params and state_size in its summary; at
the end one more run of the group (job type summary) gets the summary table and the plots. A finished run (its
summary.json is complete) is not run again, so re-running the same command with the same --out resumes a
sweep; an interrupted run resumes from its last checkpoint, and one that diverged is kept as diverged.

Every metric of a run is taken at its selected checkpoint (summary.json: the validation whose monitored metric was
best, where the test also ran). Outputs in <out>: runs.csv (every run), summary.csv and summary.md (per pattern, and
per --vary value: the best learning rate by the mean of --metric over seeds, the metric's mean and standard
deviation over seeds at that rate (4 decimals), per-slice accuracies, parameters and the recurrent state size from
backbone.state_size at the evaluation sequence length (the longest validation sequence)), acc_vs_state.png, acc_by_slice.png, loss_curves.png and,
with --vary, metric_by_setting.png. Everything is read back from the run folders (config.yaml, summary.json,
metrics.csv, checkpoints), so --from-runs gives the same outputs without a W&B server.
"""
from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from benchmarks.compare import CompareError
from benchmarks.compare.plan import plan_runs
from benchmarks.compare.report import report
from benchmarks.compare.run import execute, threads_per_job
from benchmarks.compare.wandb_summary import log_summary
from configs import ConfigError, compose_config

USAGE = __doc__


def parse_args(argv: list[str]):
    if "--" in argv:
        cut = argv.index("--")
        head, tail = argv[:cut], argv[cut + 1:]
    else:
        head, tail = argv, []
    parser = argparse.ArgumentParser(prog="compare.py", description=USAGE,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patterns", nargs="+", default=[], help="mixer patterns (see above)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds (default: the config's seed)")
    parser.add_argument("--lrs", nargs="+", type=float, default=None, help="learning rates; the best per pattern "
                        "is chosen by the mean of --metric over seeds (default: the config's optim.lr)")
    parser.add_argument("--vary", default=None, help="KEY=V1,V2,...: one more axis, e.g. data.task=parity,mux")
    parser.add_argument("--metric", default="val/acc", help="validation metric that picks the lr (default val/acc)")
    parser.add_argument("--mode", choices=("max", "min"), default="max")
    parser.add_argument("--columns", nargs="+", default=[], metavar="METRIC", help="more metrics to report, mean "
                        "± std over seeds at the chosen lr (e.g. test/hr@10 test/ndcg@10 test/mrr)")
    parser.add_argument("--out", default=None, help="output folder (default runs/compare/<experiment>-<time>)")
    parser.add_argument("--group", default=None, help="W&B group (default: the output folder's name)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per run (tiny models: 1; "
                        "default: torch's own with --jobs 1, else the cores divided by --jobs)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, each in its own process (default 1: "
                        "one after another in this process)")
    parser.add_argument("--from-runs", default=None, metavar="DIR", help="only re-read the runs under DIR and "
                        "re-make the table and plots (into --out, default DIR)")
    args, rest = parser.parse_known_args(head)
    unknown = [a for a in rest if a.startswith("-") or "=" not in a]
    if unknown:
        parser.error(f"unrecognised arguments: {' '.join(unknown)}")
    args.overrides = rest + tail
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        if args.from_runs:
            root = Path(args.from_runs)
            if not root.is_dir():
                raise CompareError(f"--from-runs: {root} is not a folder")
            report(root / "runs" if (root / "runs").is_dir() else root, Path(args.out or root), args.metric,
                   args.mode, args.columns)
            return 0
        if not args.patterns:
            raise CompareError("--patterns: give at least one mixer pattern (or --from-runs DIR)")
        base_argv = ["trainer.enable_progress_bar=false", *args.overrides]
        try:
            experiment = compose_config(base_argv).experiment
        except ConfigError as err:
            raise CompareError(str(err)) from None
        out = Path(args.out or Path("runs") / "compare" / f"{experiment}-{datetime.now():%Y%m%d-%H%M%S}")
        group = args.group or out.resolve().name
        if args.jobs < 1:
            raise CompareError(f"--jobs must be at least 1, got {args.jobs}")
        plan = plan_runs(args, base_argv, out, group)
        threads = threads_per_job(args.jobs, args.threads)
        print(f"compare: {len(plan)} runs of experiment {experiment} into {out} (W&B group {group})"
              + (f", {args.jobs} at once with {threads} CPU thread(s) each" if args.jobs > 1 else ""), flush=True)
        failed = execute(plan, args.jobs, threads)
        rows, _ = report(out / "runs", out, args.metric, args.mode, args.columns)
        if plan[0]["cfg"].logging.wandb and rows:
            print(f"W&B: summary table and plots in run {log_summary(out, rows, plan[0]['cfg'].logging, group)} "
                  f"of group {group}")
    except CompareError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if failed:
        print(f"{failed} run(s) failed; see the messages above and compare.json in their folders", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
