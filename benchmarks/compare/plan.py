"""The run grid of a comparison: mixer patterns (``[LABEL:]SPEC [key=value ...]``) x --vary values x learning
rates x seeds, each composed (so validated) into a run configuration before the first run starts."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from configs import ConfigError, compose_config

from . import CompareError


class Pattern:
    def __init__(self, text: str):
        words = text.split()
        if not words:
            raise CompareError("--patterns: an empty pattern")
        head, self.overrides = words[0], words[1:]
        label = None
        if ":" in head and not head.startswith("["):
            label, head = head.split(":", 1)
        for word in self.overrides:
            if "=" not in word:
                raise CompareError(f"--patterns {text!r}: {word!r} is not a key=value override")
        if head.startswith("["):
            if not head.endswith("]"):
                raise CompareError(f"--patterns {text!r}: a layer list must look like [a,b,...] (one shell word)")
            self.layers = [n.strip() for n in head[1:-1].split(",") if n.strip()]
            if not self.layers:
                raise CompareError(f"--patterns {text!r}: the layer list is empty")
            self.argv = [f"model.layers=[{','.join(self.layers)}]", "model.repeat=1"]
            default = self.layers[0] if len(set(self.layers)) == 1 else "-".join(self.layers)
        elif "=" in head:
            raise CompareError(f"--patterns {text!r}: looks like a config override; put overrides before the "
                               f"options or after --, and patterns as [a,b] or a mixer config name")
        else:
            self.layers = None
            self.argv = [f"mixer={head}"]
            default = head
        if label is None and self.overrides:
            default += "(" + ",".join(o.rsplit(".", 1)[-1] for o in self.overrides) + ")"
        self.label = label or default
        self.text = text
        self.argv += self.overrides


def split_values(text: str) -> list[str]:
    """'a,b,[1,2]' -> ['a', 'b', '[1,2]'] (commas inside brackets do not split)."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[{("
        depth -= ch in "]})"
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [v.strip() for v in out if v.strip()]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+=-]+", "_", text).strip("_") or "x"


def run_name(label: str, lr: float, seed: int, setting: str | None, group: str) -> str:
    tag = hashlib.sha1(group.encode()).hexdigest()[:6]  # W&B run ids must be unique in the project
    prefix = f"{slug(setting)}." if setting is not None else ""
    return f"{prefix}{slug(label)}.lr{lr:g}.s{seed}-{tag}"


def plan_runs(args, base_argv: list[str], out: Path, group: str) -> list[dict]:
    """Compose (and so validate) every run's config before the first one starts."""
    patterns = [Pattern(p) for p in args.patterns]
    labels = [p.label for p in patterns]
    if len(set(labels)) != len(labels):
        dup = sorted({l for l in labels if labels.count(l) > 1})
        raise CompareError(f"--patterns: several patterns are labelled {', '.join(dup)}; name them LABEL:SPEC")
    vary_key, vary_values = None, [None]
    if args.vary:
        if "=" not in args.vary:
            raise CompareError(f"--vary {args.vary!r}: expected KEY=V1,V2,...")
        vary_key, values = args.vary.split("=", 1)
        vary_values = split_values(values)
    plan = []
    for setting in vary_values:
        for pattern in patterns:
            argv = base_argv + ([f"{vary_key}={setting}"] if vary_key else []) + pattern.argv
            try:
                cfg0 = compose_config(argv)
            except ConfigError as err:
                raise CompareError(f"pattern {pattern.text!r}" + (f", {vary_key}={setting}" if vary_key else "")
                                   + f": {err}") from None
            for lr in (args.lrs or [float(cfg0.optim.lr)]):
                for seed in (args.seeds if args.seeds is not None else [int(cfg0.seed)]):
                    cfg = compose_config(argv)
                    cfg.seed, cfg.optim.lr = int(seed), float(lr)
                    name = run_name(pattern.label, lr, seed, setting, group)
                    cfg.logging.out_dir, cfg.logging.name, cfg.logging.group = str(out / "runs"), name, group
                    tags = ["compare", f"pattern:{pattern.label}", f"seed:{seed}", f"lr:{lr:g}"]
                    if vary_key:
                        tags.append(f"{vary_key}:{setting}")
                    cfg.logging.tags = list(dict.fromkeys(list(cfg.logging.tags) + [t[:64] for t in tags]))
                    # W&B: config.compare and the job type let a workspace group and filter runs as the tables do
                    cfg.compare = {"label": pattern.label, "pattern": pattern.text, "setting": setting,
                                   "vary_key": vary_key, "seed": int(seed), "lr": float(lr)}
                    cfg.logging.job_type = pattern.label
                    plan.append({"cfg": cfg, "label": pattern.label, "pattern": pattern.text, "seed": int(seed),
                                 "lr": float(lr), "vary_key": vary_key, "setting": setting, "group": group,
                                 "run_dir": out / "runs" / cfg.experiment / name})
    return plan
