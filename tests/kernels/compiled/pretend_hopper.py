"""Run by tests/kernels/test_compile_sm90.py without the interpreter: after tools.compile_check.pretend_hopper(),
fla takes its Hopper branches, also where it asks about a CPU tensor's device index. Prints them as JSON."""
from tools.compile_check import pretend_hopper

pretend_hopper()  # before fla is imported

import json  # noqa: E402

import fla.utils  # noqa: E402
from fla.ops.common import chunk_o  # noqa: E402


def main():
    print(json.dumps([fla.utils.is_nvidia_hopper, fla.utils.check_shared_mem("hopper", None),
                      chunk_o.check_shared_mem("hopper", None)]))


if __name__ == "__main__":
    main()
