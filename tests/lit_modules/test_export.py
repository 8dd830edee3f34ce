"""The Hugging Face export (lit_modules/export.py, lit_modules/hf_model.py): for every built-in mixer and a hybrid
stack, the exported folder loads through AutoModelForCausalLM and gives the Lightning module's logits (fp32, CPU,
1e-5), with left padding too (the mask reaches every mixer), and generate() carries each mixer's recurrent state to
the same tokens as LanguageModel.generate's greedy decoding."""
import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

from configs import compose_config, config_to_dict
from datamodules.tokenizers import load_tokenizer
from lit_modules.export import main as export_main
from lit_modules.hf_model import MixerCache, MixerLMForCausalLM
from lit_modules.language_model import LanguageModel
from mixers.base import MixerState
from mixers.registry import get_mixer, mixer_names

REPO = Path(__file__).resolve().parents[2]
VOCAB = 40
SMALL = {"attention": ["model.mixers.attention.num_heads=2"], "prism": ["model.mixers.prism.num_heads=2"],
         "gdn": ["model.mixers.gdn.num_heads=2"], "gla": ["model.mixers.gla.num_heads=2"],
         "mamba2": ["model.mixers.mamba2.head_dim=16"], "ttt_mlp": ["model.mixers.ttt_mlp.head_dim=16"],
         "linear_attention": ["model.mixers.linear_attention.num_heads=2"]}


def test_every_built_in_mixer_is_covered():
    built_in = {n for n in mixer_names() if get_mixer(n).__module__.startswith("mixers.")}
    assert built_in == set(SMALL)


def save_checkpoint(module: LanguageModel, path: Path) -> Path:
    """A checkpoint written by Lightning itself, as a run's checkpoints/*.ckpt."""
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)
    return path


def same_as_lightning(module: LanguageModel, model, vocab: int, generate: bool = True) -> None:
    torch.manual_seed(1)
    x = torch.randint(0, vocab, (2, 13))
    with torch.no_grad():
        torch.testing.assert_close(model(x).logits, module(x)[0], rtol=1e-5, atol=1e-5)
        # row 1 is 9 tokens left-padded to 13: its real positions give the logits of the 9 tokens alone
        mask = torch.ones_like(x)
        mask[1, :4] = 0
        padded = model(x, attention_mask=mask).logits
        torch.testing.assert_close(padded[1, 4:], module(x[1:, 4:])[0][0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(padded[0], module(x[:1])[0][0], rtol=1e-5, atol=1e-5)
        # a cache passed in is updated in place, and the rest of the sequence continues from it
        cache = MixerCache()
        assert model(x[:, :8], past_key_values=cache, use_cache=True).past_key_values is cache
        torch.testing.assert_close(model(x[:, 8:], past_key_values=cache).logits, module(x)[0][:, 8:], rtol=1e-5,
                                   atol=1e-5)
        assert cache.get_seq_length() == 13
        # labels are the inputs, shifted inside, as transformers' causal LMs take them
        expected = F.cross_entropy(module(x)[0][:, :-1].flatten(0, 1), x[:, 1:].flatten())
        torch.testing.assert_close(model(x, labels=x).loss, expected, rtol=1e-5, atol=1e-6)
    if generate:
        ours = module.generate(x, 6, temperature=0)
        theirs = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=6, do_sample=False)
        assert torch.equal(theirs, ours)


@pytest.mark.parametrize("mixer", sorted(SMALL))
def test_export_round_trip_gives_the_lightning_logits_and_greedy_tokens(tmp_path, mixer):
    cfg = compose_config(["model.d_model=32", f"model.layers=[{mixer},{mixer}]", "model.repeat=1", *SMALL[mixer]])
    torch.manual_seed(0)
    module = LanguageModel(config_to_dict(cfg), vocab_size=VOCAB).eval()
    ckpt = save_checkpoint(module, tmp_path / "model.ckpt")
    assert export_main([str(ckpt), str(tmp_path / "hf")]) == 0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    assert isinstance(model, MixerLMForCausalLM)
    same_as_lightning(module, model.eval(), VOCAB)
    # the cache generate() carries holds each layer's MixerState
    out = model(torch.zeros(1, 3, dtype=torch.long), use_cache=True)
    assert isinstance(out.past_key_values, MixerCache) and out.past_key_values.get_seq_length() == 3
    assert all(isinstance(s, MixerState) for s in out.past_key_values.states)


def test_a_trained_hybrid_run_exports_with_its_tokenizer(text_run, tmp_path, capsys):
    out = tmp_path / "hf"
    assert export_main([str(text_run), str(out)]) == 0
    assert "checkpoints/best.ckpt" in capsys.readouterr().out
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
            "modeling_mixer_lm.py"} <= names
    config = json.loads((out / "config.json").read_text())
    assert config["layer_pattern"] == ["attention", "prism", "gdn", "gla", "mamba2", "ttt_mlp"]
    assert config["mixers"]["prism"]["steps"] == 2 and config["mixers"]["mamba2"]["head_dim"] == 16
    assert config["max_position_embeddings"] == 32 and config["model_type"] == "mixer_lm"

    tokenizer = AutoTokenizer.from_pretrained(out)
    root = text_run.parents[2]
    text = (root / "corpus.txt").read_text()[:500]
    ours = load_tokenizer(next((root / "cache").glob("*/tokenizer_meta.json")).parent)  # the run's, from its cache
    assert tokenizer.encode(text, add_special_tokens=False) == ours.encode(text)
    assert tokenizer.decode(ours.encode(text)) == text and tokenizer.eos_token_id == ours.eos_id

    module = LanguageModel.load_from_checkpoint(text_run / "checkpoints" / "best.ckpt").eval()
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    same_as_lightning(module, model, model.config.vocab_size)


def test_trust_remote_code_loads_the_folder_in_a_fresh_process(text_run, tmp_path):
    # where the repository is importable, no import of ours first: what tools that only call from_pretrained do
    out = tmp_path / "hf"
    assert export_main([str(text_run), str(out)]) == 0
    probe = ("import sys, torch; from transformers import AutoModelForCausalLM; "
             f"m = AutoModelForCausalLM.from_pretrained({str(out)!r}, trust_remote_code=True).eval(); "
             "x = torch.arange(10)[None] % m.config.vocab_size; "
             "print(type(m).__module__, float(m(x).logits.double().sum()))")
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    module_name, total = result.stdout.split()[-2:]
    assert module_name == "lit_modules.hf_model"
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        expected = float(model(torch.arange(10)[None] % model.config.vocab_size).logits.double().sum())
    assert float(total) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "nothing", "does not exist"),
    (lambda p: p, "not a run folder"),
    (lambda p: (p / "x.ckpt").write_bytes(b"not a checkpoint") and p / "x.ckpt", "not a readable"),
])
def test_bad_input_is_one_line(tmp_path, capsys, make, message):
    assert export_main([str(make(tmp_path)), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_beam_search_reorders_the_recurrent_states(text_run):
    # each beam's score (mean log-likelihood of its new tokens) equals a fresh forward pass over the whole sequence:
    # the states followed their beams through every reordering
    from lit_modules.export import load_model

    model, tok, _ = load_model(text_run)
    x = torch.tensor([tok.encode("the cat sat")])
    out = model.generate(x, attention_mask=torch.ones_like(x), num_beams=3, num_return_sequences=3, max_new_tokens=5,
                         do_sample=False, output_scores=True, return_dict_in_generate=True)
    for sequence, score in zip(out.sequences, out.sequences_scores):
        with torch.no_grad():
            logprobs = model(sequence[None]).logits[0, :-1].double().log_softmax(-1)
        new = range(x.shape[1], len(sequence))
        assert float(score) == pytest.approx(sum(float(logprobs[i - 1, sequence[i]]) for i in new) / len(new),
                                             rel=1e-5)
