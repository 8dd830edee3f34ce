"""experiment=lm_char is nanoGPT's shakespeare_char recipe (karpathy/nanoGPT config/train_shakespeare_char.py and
its train.py defaults): the composed config, the model's size and the 90/10 split of the text."""
import pytest

from configs import compose_config, config_to_dict
from lit_modules.backbone import expand_layers
from lit_modules.language_model import LanguageModel
from lit_modules.optim import lr_factor


def test_the_recipe_is_nanogpts():
    cfg = compose_config(["experiment=lm_char"])
    assert expand_layers(cfg.model) == ["attention"] * 6  # n_layer 6
    assert cfg.model.d_model == 384 and cfg.model.mixers.attention.num_heads == 6  # n_embd, n_head
    assert (cfg.data.seq_len, cfg.data.batch_size, cfg.model.dropout) == (256, 64, 0.2)  # block_size, batch_size
    o, t = cfg.optim, cfg.trainer
    assert (o.name, o.lr, list(o.betas), o.weight_decay) == ("adamw", 1e-3, [0.9, 0.99], 0.1)
    assert (o.warmup_steps, t.max_steps, t.gradient_clip_val) == (100, 5000, 1.0)  # warmup_iters, max_iters
    assert o.lr * lr_factor(5000, warmup_steps=100, max_steps=5000, schedule=o.schedule,
                            min_lr_ratio=o.min_lr_ratio) == pytest.approx(1e-4)  # min_lr at lr_decay_iters
    assert (t.val_check_interval, t.limit_val_batches) == (250, 200)  # eval_interval, eval_iters
    assert cfg.model.mixers.attention.dropout == 0.2  # attn_dropout
    assert t.early_stopping_patience == 3
    module = LanguageModel(config_to_dict(cfg), vocab_size=66)
    assert module.embed_dropout.p == 0.2  # nanoGPT drops the embeddings too (transformer.drop)
    assert round(sum(p.numel() for p in module.parameters()) / 1e6, 2) == 10.65  # nanoGPT: "10.65M"


def test_a_mixer_group_keeps_the_attention_dropout():
    """mixer=attention resets the heads (its group file) but not the recipe's attention dropout, and a hybrid's
    attention layers get it too."""
    assert compose_config(["experiment=lm_char", "mixer=attention"]).model.mixers.attention.dropout == 0.2
    hybrid = compose_config(["experiment=lm_char", "mixer=prism", "model.insert_every=3"])
    assert expand_layers(hybrid.model) == ["prism", "prism", "attention"] * 2
    assert hybrid.model.mixers.attention.dropout == 0.2


def test_the_split_is_nanogpts(data_file, tmp_path):
    from datamodules.text import TextDataModule

    cfg = compose_config(["experiment=lm_char", f"data.path={data_file('tinyshakespeare')}",
                          f"data.cache_dir={tmp_path}"])
    dm = TextDataModule(cfg.data)
    dm.setup("fit")
    # nanoGPT: train 1,003,854 characters, val 111,540; here one more token, the EOS after the text
    assert (dm.train_dataset.n_tokens, dm.val_dataset.n_tokens) == (1_003_855, 111_540)
    assert dm.vocab_size == 66 and len(dm.val_dataset) == 435  # 65 characters + EOS; 7 batches of 64
