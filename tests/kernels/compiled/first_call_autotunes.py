"""Run on a GPU by tests/kernels/test_prism_triton_gpu.py in a fresh process with autotuning on: the Triton PRISM
op's first call, which tunes every autotuned kernel (each config is launched before the chosen one), against its
second call. Prints {name: relative difference} as JSON."""
import json

import torch

from kernels.prism import prism_delta_rule
from tests.kernels.test_prism_triton_gpu import NAMES, make, outputs_and_grads, rel


def op(q, k, v, beta, g, h0):
    return prism_delta_rule(q, k, v, beta, g, initial_state=h0, output_final_state=True, backend="triton")


def main():
    xs = make(1, 2048, 6, 2, 128, 128, 1, torch.bfloat16)  # the op benchmark's shapes: a warmed cache holds them
    first = outputs_and_grads(op, xs, True)
    later = outputs_and_grads(op, xs, True)
    print(json.dumps({n: rel(a, b) for n, a, b in zip(NAMES, first, later)}))


if __name__ == "__main__":
    main()
