"""Sample text from a language model trained here (docs/evaluation.md).

    python generate.py RUN_OR_EXPORT "ROMEO:" --max-new-tokens 500 --temperature 0.8 --top-k 50
    python generate.py RUN_OR_EXPORT "First Citizen:" "JULIET:" --temperature 0     # a batch, greedy

RUN_OR_EXPORT is a folder written by ``python -m lit_modules.export``, a run folder (its best checkpoint) or a
checkpoint file; the tokenizer is the one saved with it. One prompt streams its continuation as it is generated;
several prompts are generated as one left-padded batch, whose padding mask reaches every mixer so that each row
continues exactly as it would alone, and are printed in order. Each continuation stops at EOS or after
--max-new-tokens. --temperature 0 is greedy decoding; --top-k keeps the k most likely tokens (default: all).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="generate.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="exported folder, run folder or checkpoint file")
    parser.add_argument("prompts", nargs="+", help="one or more prompts ('' starts a new document)")
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    args = parser.parse_args(argv)

    import torch
    from transformers import TextStreamer

    from lit_modules.export import ExportError, load_model
    from lit_modules.text_generation import generate_texts

    try:
        model, tokenizer, _ = load_model(args.model)
    except ExportError as err:
        print(f"error: RUN_OR_EXPORT: {err}", file=sys.stderr)
        return 2
    if tokenizer is None:
        print(f"error: {args.model} has no tokenizer (the run trained on generated tokens): prompts cannot be "
              f"encoded", file=sys.stderr)
        return 2
    model.to(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(args.seed)
    single = len(args.prompts) == 1
    if single:
        print(args.prompts[0], end="", flush=True)
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True) if single else None
    try:
        texts = generate_texts(model, tokenizer, args.prompts, max_new_tokens=args.max_new_tokens,
                               temperature=args.temperature, top_k=args.top_k, streamer=streamer)
    except Exception as err:  # noqa: BLE001 - the tokenizers library raises a bare Exception for unknown text
        if "UNK" not in str(err):
            raise
        print(f"\nerror: a prompt holds characters the tokenizer does not know ({err}); a character-level "
              f"vocabulary holds only the characters of its training corpus", file=sys.stderr)
        return 2
    if not single:
        for prompt, text in zip(args.prompts, texts):
            print(f"{prompt}{text}\n{'-' * 40}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
