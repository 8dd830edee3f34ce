"""Evaluate a language model with lm-evaluation-harness (docs/evaluation.md).

    python evaluate.py MODEL --tasks lambada_openai,piqa,hellaswag,winogrande,arc_easy,arc_challenge,wikitext
    python evaluate.py runs/lm_char/20250101-120000 --tasks tests/lm_eval_tasks/tiny_choice.yaml --limit 100

MODEL is a folder written by ``python -m lit_modules.export``, a run folder (its best checkpoint, exported in
memory) or a checkpoint file. --tasks: harness task names or task YAML files, comma-separated. The results go into
the run folder (or the exported folder): eval_results.json (the harness's results, merged by task with earlier
evaluations) and eval_results.md; a run logged to W&B also gets them in its W&B run, as summary values
``eval/<task>/<metric>`` and a table ``eval/results``. ``trainer.eval_tasks=[...]`` runs the same at the end of
training. The harness downloads each task's data from the Hugging Face hub once and keeps it in the datasets cache:
without network and without that cache the command stops with one line that says so.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RESULTS_JSON, RESULTS_MD = "eval_results.json", "eval_results.md"


class EvaluationError(RuntimeError):
    """A model, task or network problem, reported in one line."""


def _hub_problem(err: BaseException) -> str | None:
    """The first line of a download failure somewhere in err's chain, else None."""
    while err is not None:
        if isinstance(err, ConnectionError) or type(err).__name__ in ("OfflineModeIsEnabled", "ConnectionError"):
            return str(err).splitlines()[0] if str(err) else type(err).__name__
        err = err.__cause__ or err.__context__
    return None


def run_harness(model, tokenizer, tasks: list[str], **options) -> dict:
    from datamodules.tokenizers import ensure_hub_or_offline
    from lit_modules.harness import HarnessError, run_tasks

    ensure_hub_or_offline()  # an unreachable hub: offline mode at once, instead of retrying for half a minute
    try:
        return run_tasks(model, tokenizer, tasks, **options)
    except HarnessError as err:
        raise EvaluationError(str(err)) from None
    except KeyError as err:  # the harness's own message names the unknown task
        raise EvaluationError(f"--tasks: {err.args[0] if err.args else err}") from None
    except Exception as err:
        problem = _hub_problem(err)
        if problem is None:
            raise
        raise EvaluationError(
            f"task data could not be downloaded ({problem}): lm-evaluation-harness fetches each task's data from "
            f"the Hugging Face hub, which is offline or unreachable here, and the datasets cache has no copy; run "
            f"once with network (the cache keeps it) or give a task YAML file with local data") from None


def record(out_dir: Path, results: dict) -> list[dict]:
    """Merge the results into out_dir/eval_results.json (by task), rewrite eval_results.md; returns the rows."""
    from lit_modules.atomic import write_text_atomic
    from lit_modules.harness import markdown_table, result_rows

    path = out_dir / RESULTS_JSON
    merged = json.loads(path.read_text()) if path.is_file() else {}
    for section, values in results.items():
        if isinstance(values, dict):
            merged.setdefault(section, {}).update(values)
    write_text_atomic(path, json.dumps(merged, indent=2, default=str))  # merged: a failed write keeps the old results
    rows = result_rows(merged)
    write_text_atomic(out_dir / RESULTS_MD, markdown_table(rows))
    return result_rows(results)


def log_to_wandb(run, rows: list[dict]) -> None:
    import wandb

    run.summary.update({f"eval/{r['task']}/{r['metric']}": r["value"] for r in rows})
    columns = ["task", "metric", "filter", "value", "stderr"]
    run.log({"eval/results": wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in rows])})


def open_wandb_run(run_dir: Path):
    """The run's own W&B run, resumed (offline without WANDB_API_KEY), or None when the run did not log to W&B."""
    from omegaconf import OmegaConf

    config = run_dir / "config.yaml"
    if not config.is_file() or not (run_dir / "wandb").is_dir():
        return None
    logging = OmegaConf.load(config).logging
    if not logging.wandb:
        return None
    import wandb

    from lit_modules.loggers import wandb_mode
    from lit_modules.run_dir import IDENTITY

    try:  # the run's own W&B id (run.json), so the results land in the run's W&B run
        run_id = json.loads((run_dir / IDENTITY).read_text())["id"]
    except (OSError, ValueError, KeyError):
        return None
    return wandb.init(project=logging.project, id=run_id, resume="allow", dir=str(run_dir), mode=wandb_mode(logging))


def evaluate(model_path: Path, tasks: list[str], device: str = "cpu", **options) -> tuple[list[dict], Path]:
    """Evaluate and record; returns (rows, the folder the results went into)."""
    from lit_modules.export import ExportError, load_model

    try:
        model, tokenizer, run_dir = load_model(model_path)
    except ExportError as err:
        raise EvaluationError(f"MODEL: {err}") from None
    results = run_harness(model.to(device), tokenizer, tasks, **options)
    out_dir = run_dir or (model_path if model_path.is_dir() else model_path.parent)
    rows = record(out_dir, results)
    if run_dir is not None and (run := open_wandb_run(run_dir)) is not None:
        log_to_wandb(run, rows)
        run.finish()
    return rows, out_dir


def evaluate_after_training(run_dir: Path, tasks: list[str], loggers) -> dict:
    """``trainer.eval_tasks``: evaluate the run's best checkpoint, record it in the run folder and in the run's
    open W&B logger; returns the values for summary.json (``eval/<task>/<metric>``)."""
    from lit_modules.export import load_model

    model, tokenizer, _ = load_model(run_dir)
    rows = record(run_dir, run_harness(model.to("cuda" if _cuda() else "cpu"), tokenizer, tasks))
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            log_to_wandb(logger.experiment, rows)
    return {f"eval/{r['task']}/{r['metric']}": r["value"] for r in rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="evaluate.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="exported folder, run folder or checkpoint file")
    parser.add_argument("--tasks", required=True, help="comma-separated harness task names or task YAML files")
    parser.add_argument("--limit", type=float, default=None, help="documents per task (a fraction if < 1)")
    parser.add_argument("--num-fewshot", type=int, default=None, help="few-shot examples (default: each task's)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    args = parser.parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    try:
        rows, out_dir = evaluate(args.model, tasks, limit=args.limit, num_fewshot=args.num_fewshot,
                                 batch_size=args.batch_size, device=args.device)
    except EvaluationError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from lit_modules.harness import markdown_table

    print(markdown_table(rows), end="")
    print(f"wrote {out_dir / RESULTS_JSON} and {out_dir / RESULTS_MD}")
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
