"""A comparison's summary in W&B (docs/training.md): one run of the comparison's group, job type ``summary``, that
holds summary.csv as a ``wandb.Table`` (key ``summary``) and every PNG plot of the comparison as an image
(``plots/<name>``), beside the group's training runs (each with ``config.compare``, its label as job type, and
``params`` and ``state_size`` in its summary)."""
from __future__ import annotations

import hashlib
from pathlib import Path


def log_summary(out: Path, rows: list[dict], logging_cfg, group: str) -> str:
    """Log the summary rows and out/*.png into the group's summary run; returns the W&B run id."""
    import wandb

    from lit_modules.loggers import wandb_mode

    from .plan import slug

    columns = list(dict.fromkeys(k for r in rows for k in r))
    data = [[";".join(r[c]) if isinstance(r.get(c), list) else r.get(c) for c in columns] for r in rows]
    run_id = f"{slug(group)[:48]}-summary-{hashlib.sha1(group.encode()).hexdigest()[:6]}"
    run = wandb.init(project=logging_cfg.project, group=group, job_type="summary", name=f"{group} summary",
                     id=run_id, resume="allow", dir=str(out), mode=wandb_mode(logging_cfg),
                     tags=["compare", "summary"])
    images = {f"plots/{p.stem}": wandb.Image(str(p)) for p in sorted(out.glob("*.png"))}
    run.log({"summary": wandb.Table(columns=columns, data=data), **images})
    run.finish()
    return run_id
