"""Run by tests/datamodules/test_text.py in a process without the HF_*_OFFLINE variables and with an unreachable
hub: how long preparing a hub dataset takes to fail, and its error. Prints ``ELAPSED <seconds>`` and the error.

    python -m tests.datamodules.unreachable_hub CACHE_DIR
"""
import sys
import time

from datamodules.text import HubUnavailableError, TextDataModule


def main(cache_dir: str) -> None:
    t = time.perf_counter()
    dm = TextDataModule({"hub": "cerebras/SlimPajama-627B", "cache_dir": cache_dir})
    try:
        dm.prepare_data()
    except HubUnavailableError as err:
        print("ELAPSED", time.perf_counter() - t)
        print(err)


if __name__ == "__main__":
    main(sys.argv[1])
