"""generate.py and lit_modules/text_generation.py on a trained run of every mixer: a batch of prompts of different
lengths (left padding, the mask passed to every mixer) gives each row what that prompt gives alone, generation
stops at EOS, one prompt streams, and bad input is one line."""
import pytest
import torch

import generate
from lit_modules.export import load_model
from lit_modules.language_model import LanguageModel
from lit_modules.text_generation import generate_texts

PROMPTS = ["the cat sat on the", "a dog"]


@pytest.fixture(scope="module")
def model_and_tokenizer(text_run):
    model, tokenizer, _ = load_model(text_run)
    return model, tokenizer


def test_each_row_of_a_batch_equals_its_prompt_alone(text_run, model_and_tokenizer):
    model, tok = model_and_tokenizer
    batch = generate_texts(model, tok, PROMPTS, max_new_tokens=12)
    alone = [generate_texts(model, tok, [p], max_new_tokens=12)[0] for p in PROMPTS]
    assert batch == alone and all(len(t) == 12 for t in alone)  # no EOS here: 12 characters each
    # and the same tokens as the Lightning module's own greedy decoding
    ids = torch.tensor([tok.encode(PROMPTS[1])])
    module = LanguageModel.load_from_checkpoint(text_run / "checkpoints" / "best.ckpt")
    assert tok.decode(module.generate(ids, 12, temperature=0)[0, ids.shape[1]:]) == alone[1]


def test_generation_stops_at_eos(model_and_tokenizer):
    model, tok = model_and_tokenizer
    ids = tok(PROMPTS[0], return_tensors="pt").input_ids
    greedy = model.generate(ids, max_new_tokens=12, do_sample=False)[0, ids.shape[1]:].tolist()
    k = next(i for i in range(1, len(greedy)) if greedy[i] not in greedy[:i])  # a token first produced at step k
    eos = model.generation_config.eos_token_id
    try:
        model.generation_config.eos_token_id = greedy[k]  # as if that token were EOS
        assert generate_texts(model, tok, [PROMPTS[0]], max_new_tokens=12) == [tok.decode(greedy[:k])]
    finally:
        model.generation_config.eos_token_id = eos


def test_one_prompt_streams_and_a_batch_prints_in_order(text_run, model_and_tokenizer, capsys):
    model, tok = model_and_tokenizer
    expected = generate_texts(model, tok, PROMPTS, max_new_tokens=8)
    assert generate.main([str(text_run), PROMPTS[0], "--max-new-tokens", "8", "--temperature", "0"]) == 0
    assert capsys.readouterr().out == PROMPTS[0] + expected[0] + "\n"
    assert generate.main([str(text_run), *PROMPTS, "--max-new-tokens", "8", "--temperature", "0"]) == 0
    out = capsys.readouterr().out
    assert out.index(PROMPTS[0] + expected[0]) < out.index(PROMPTS[1] + expected[1])


def test_sampling_follows_the_seed(text_run, capsys):
    argv = [str(text_run), "the", "--max-new-tokens", "10", "--temperature", "1.5", "--top-k", "5"]
    outputs = []
    for seed in ("1", "1", "2"):
        assert generate.main([*argv, "--seed", seed]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] != outputs[2]


def test_unknown_characters_are_a_one_line_error(text_run, capsys):
    assert generate.main([str(text_run), "ZEBRA", "--max-new-tokens", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: a prompt holds characters the tokenizer does not know") and "\n" not in err
