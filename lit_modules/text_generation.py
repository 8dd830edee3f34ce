"""Text in, text out with a Hugging Face causal LM of this repository (lit_modules/hf_model.py): the prompts go as
one left-padded batch whose mask reaches every mixer, and each row stops at EOS (docs/evaluation.md)."""
from __future__ import annotations

import torch


@torch.no_grad()
def generate_texts(model, tokenizer, prompts: list[str], *, max_new_tokens: int, temperature: float = 0.0,
                   top_k: int | None = None, streamer=None) -> list[str]:
    """The continuation of each prompt, up to its first EOS. temperature 0: greedy; top_k None: no top-k cut.
    An empty prompt starts after EOS, where every training document starts."""
    texts = [p if p else tokenizer.eos_token for p in prompts]
    batch = tokenizer(texts, padding=True, padding_side="left", return_tensors="pt", add_special_tokens=False)
    batch = batch.to(model.device)
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    if temperature > 0:
        sampling["top_k"] = top_k or 0  # 0: no cut (transformers would default to 50)
    out = model.generate(**batch, max_new_tokens=max_new_tokens, streamer=streamer,
                         pad_token_id=tokenizer.pad_token_id, **sampling)
    eos = model.generation_config.eos_token_id
    stops = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
    texts = []
    for row in out[:, batch["input_ids"].shape[1]:].tolist():
        end = next((i for i, token in enumerate(row) if token in stops), len(row))  # the text ends before EOS
        texts.append(tokenizer.decode(row[:end], skip_special_tokens=True))
    return texts
