"""Run by tests/kernels/test_prism_triton.py under Triton's interpreter: with our kernels' autotuners launching
every config first, as on a GPU, every implementation of the Triton PRISM op still matches the naive op. Prints
{implementation_name: relative error} as JSON."""
from tests.kernels.interpreted.prism_op import NAMES, fwd_bwd, make, rel  # first: patches the interpreter

import json  # noqa: E402
import os  # noqa: E402

import tools.fla_interpret as fi  # noqa: E402


def main():
    fi.run_configs_when_tuning()  # our kernels' autotuners launch every config first, as on a GPU
    xs = make(1, 37, 2, 2, 16, 16, 1, seed=0)
    ref = fwd_bwd("naive", [x.double() for x in xs], True)
    out = {}
    for impl in ("split_fused", "split", "expanded"):  # between them, every autotuned kernel of ours
        os.environ["PRISM_TRITON_IMPL"] = impl
        got = fwd_bwd("triton", xs, True, chunk_size=16)
        out.update({f"{impl}_{n}": rel(a, b) for n, a, b in zip(NAMES, got, ref)})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
