"""Export a trained language model as a Hugging Face ``transformers`` model folder (docs/evaluation.md).

    python -m lit_modules.export RUN_OR_CKPT OUT_DIR

RUN_OR_CKPT is a run folder (its ``checkpoints/best.ckpt``, else ``last.ckpt``) or a Lightning checkpoint (a file, or
the folder of a sharded FSDP checkpoint).
OUT_DIR gets ``config.json`` (``MixerLMConfig``), ``generation_config.json``, ``model.safetensors``, the run's
tokenizer (``save_pretrained``; runs on text data keep one in ``<run>/tokenizer/``) and ``modeling_mixer_lm.py``.
Then, where this repository is importable:

    import lit_modules.hf_model                                   # registers the Auto classes
    model = AutoModelForCausalLM.from_pretrained(OUT_DIR)
    model = AutoModelForCausalLM.from_pretrained(OUT_DIR, trust_remote_code=True)   # without that import
    tokenizer = AutoTokenizer.from_pretrained(OUT_DIR)

``modeling_mixer_lm.py`` only imports the classes from this repository: the folder does not carry the mixers' code.
"""
from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

from omegaconf import OmegaConf

from mixers.registry import import_plugins

from . import checkpoints
from .backbone import expand_layers, mixer_configs, mlp_width
from .hf_model import MixerLMConfig, MixerLMForCausalLM

# Lightning module attribute -> Hugging Face attribute (lit_modules/language_model.py -> lit_modules/hf_model.py)
_RENAMES = (("embed.", "model.embed_tokens."), ("backbone.", "model.backbone."), ("head.", "lm_head."))
REMOTE_CODE = '''"""The classes of this model folder, imported from the repository that exported it
(lit_modules/hf_model.py). That repository must be importable, e.g. PYTHONPATH=<its root>: this folder does not
carry the mixers' code."""
from lit_modules.hf_model import MixerLMConfig, MixerLMForCausalLM  # noqa: F401
'''
AUTO_MAP = {"AutoConfig": "modeling_mixer_lm.MixerLMConfig",
            "AutoModelForCausalLM": "modeling_mixer_lm.MixerLMForCausalLM"}


class ExportError(ValueError):
    """A path that holds no exportable model, reported without a traceback."""


def find_checkpoint(path: Path) -> tuple[Path, Path | None]:
    """(checkpoint file, run folder or None) for a run folder or a checkpoint file."""
    path = Path(path)
    if checkpoints.exists(path):
        return path, (path.parent.parent if path.parent.name == "checkpoints" else None)
    if path.is_dir():
        for name in ("best.ckpt", "last.ckpt"):
            if checkpoints.exists(path / "checkpoints" / name):
                return path / "checkpoints" / name, path
        raise ExportError(f"{path}: neither checkpoints/best.ckpt nor checkpoints/last.ckpt (not a run folder)")
    raise ExportError(f"{path} does not exist")


def read_checkpoint(ckpt: Path) -> tuple[dict, int, dict]:
    """(run config, vocabulary size, state dict) of a LanguageModel checkpoint."""
    try:
        checkpoint = checkpoints.load(ckpt)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ExportError(f"{ckpt} is not a readable Lightning checkpoint ({err})") from None
    hparams = checkpoint.get("hyper_parameters") or {}
    if "cfg" not in hparams or "vocab_size" not in hparams:
        raise ExportError(f"{ckpt}: not a language model checkpoint of this repository (its hyperparameters have "
                          f"no cfg and vocab_size; only language models export)")
    return hparams["cfg"], int(hparams["vocab_size"]), checkpoint["state_dict"]


def hf_config(cfg: dict, vocab_size: int, tokenizer=None) -> MixerLMConfig:
    """The MixerLMConfig of a run config: the expanded layer pattern and every mixer's full hyperparameters."""
    model = OmegaConf.create(cfg["model"])
    import_plugins(list(model.plugins))
    data = cfg.get("data") or {}
    return MixerLMConfig(
        vocab_size=vocab_size, hidden_size=model.d_model, layer_pattern=expand_layers(model),
        mixers={name: asdict(c) for name, c in mixer_configs(model).items()}, plugins=list(model.plugins),
        intermediate_size=mlp_width(model), rms_norm_eps=model.norm_eps, dropout=model.dropout,
        initializer_range=model.init_std, tie_word_embeddings=model.tie_embeddings,
        max_position_embeddings=data.get("seq_len"),
        eos_token_id=getattr(tokenizer, "eos_token_id", None), pad_token_id=getattr(tokenizer, "pad_token_id", None))


def to_hf_model(ckpt: Path, tokenizer=None) -> MixerLMForCausalLM:
    """The checkpoint's weights in a MixerLMForCausalLM (eval mode, fp32, CPU)."""
    cfg, vocab_size, state = read_checkpoint(ckpt)
    model = MixerLMForCausalLM(hf_config(cfg, vocab_size, tokenizer))
    renamed = {}
    for key, value in state.items():
        old, new = next(((o, n) for o, n in _RENAMES if key.startswith(o)), (None, None))
        if old is None:
            raise ExportError(f"{ckpt}: unexpected tensor {key!r} (not embed., backbone. or head.)")
        renamed[new + key[len(old):]] = value
    missing, unexpected = model.load_state_dict(renamed, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and model.config.tie_word_embeddings)]
    if missing or unexpected:
        raise ExportError(f"{ckpt}: the checkpoint does not match its own config (missing {missing[:3]}, "
                          f"unexpected {unexpected[:3]})")
    return model.eval()


def run_tokenizer(run_dir: Path | None):
    """The tokenizer a text run saved in ``<run>/tokenizer/`` (None for runs on generated tokens)."""
    folder = run_dir / "tokenizer" if run_dir is not None else None
    if folder is None or not folder.is_dir():
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def export(run_or_ckpt: Path, out_dir: Path) -> tuple[Path, bool]:
    """Write the model folder; returns (checkpoint used, whether a tokenizer was written)."""
    ckpt, run_dir = find_checkpoint(run_or_ckpt)
    tokenizer = run_tokenizer(run_dir)
    model = to_hf_model(ckpt, tokenizer)
    model.config.auto_map = dict(AUTO_MAP)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    (out_dir / "modeling_mixer_lm.py").write_text(REMOTE_CODE)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out_dir))
    return ckpt, tokenizer is not None


def load_model(path: Path):
    """(model, tokenizer or None, run folder or None) from an exported folder, a run folder or a checkpoint; a run
    is exported in memory."""
    path = Path(path)
    if path.is_dir() and (path / "config.json").is_file():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(str(path)).eval()
        has_tokenizer = (path / "tokenizer_config.json").is_file() or (path / "tokenizer.json").is_file()
        return model, (AutoTokenizer.from_pretrained(str(path)) if has_tokenizer else None), None
    ckpt, run_dir = find_checkpoint(path)
    tokenizer = run_tokenizer(run_dir)
    return to_hf_model(ckpt, tokenizer), tokenizer, run_dir


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 2 or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    try:
        ckpt, with_tokenizer = export(Path(argv[0]), Path(argv[1]))
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"exported {ckpt} to {argv[1]}" + ("" if with_tokenizer else
          " (no tokenizer: the run trained on generated tokens, or has no tokenizer/ folder)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
