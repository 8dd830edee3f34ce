"""lm-evaluation-harness through evaluate.py and ``trainer.eval_tasks`` on the local tasks in tests/lm_eval_tasks/
(multiple choice, perplexity, generation): the harness's numbers equal those computed from the Lightning module
itself, they land in eval_results.json/.md, summary.json and the run's W&B run, and missing task data offline is a
one-line error."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

import evaluate
from lit_modules.export import main as export_main
from lit_modules.language_model import LanguageModel

TASKS = Path(__file__).parent / "lm_eval_tasks"
DOCS = [json.loads(line) for line in (TASKS / "tiny.jsonl").read_text().splitlines()]


def loglikelihood(module, ids: list[int], scored: int) -> float:
    """log p of the last ``scored`` tokens of ids given the ones before them."""
    with torch.no_grad():
        logprobs = module(torch.tensor([ids[:-1]]))[0][0].double().log_softmax(-1)
    return float(sum(logprobs[i - 1, ids[i]] for i in range(len(ids) - scored, len(ids))))


@pytest.fixture(scope="module")
def expected(text_run):
    """Each local task's metric computed from the Lightning module of the run's best checkpoint."""
    module = LanguageModel.load_from_checkpoint(text_run / "checkpoints" / "best.ckpt").eval()
    tok = AutoTokenizer.from_pretrained(text_run / "tokenizer")
    correct = 0
    for doc in DOCS:
        scores = [loglikelihood(module, tok.encode(doc["context"] + c), len(tok.encode(c))) for c in doc["choices"]]
        correct += max(range(len(scores)), key=scores.__getitem__) == doc["label"]
    total_ll = sum(loglikelihood(module, [tok.eos_token_id] + tok.encode(d["text"]), len(d["text"])) for d in DOCS)
    n_bytes = sum(len(d["text"].encode()) for d in DOCS)
    matches = 0
    for doc in DOCS:
        prompt = torch.tensor([tok.encode(doc["question"])])
        new = module.generate(prompt, 6, temperature=0)[0, prompt.shape[1]:].tolist()
        eos = new.index(tok.eos_token_id) if tok.eos_token_id in new else len(new)
        matches += tok.decode(new[:eos]).split("\n")[0] == doc["answer"]
    return {"tiny_choice/acc": correct / len(DOCS), "tiny_ppl/byte_perplexity": math.exp(-total_ll / n_bytes),
            "tiny_ppl/bits_per_byte": -total_ll / n_bytes / math.log(2), "tiny_gen/exact_match": matches / len(DOCS)}


def values(results_json: Path) -> dict:
    results = json.loads(results_json.read_text())["results"]
    return {f"{task}/{key.split(',')[0]}": v for task, metrics in results.items() for key, v in metrics.items()
            if key.endswith(",none") and "_stderr" not in key}


def test_eval_tasks_at_the_end_of_training_equal_the_lightning_modules_own_scores(text_run, expected):
    got = values(text_run / "eval_results.json")
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5), key
    summary = json.loads((text_run / "summary.json").read_text())
    assert summary["eval/tiny_ppl/byte_perplexity"] == pytest.approx(expected["tiny_ppl/byte_perplexity"], rel=1e-5)
    table = (text_run / "eval_results.md").read_text()
    assert "| tiny_choice | acc | none |" in table and "| tiny_ppl | bits_per_byte | none |" in table


def wandb_records(run_dir: Path) -> list[dict]:
    records = []
    for log in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
        out = subprocess.run([str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--json", str(log)],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        records += [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return records


def test_eval_results_are_in_the_runs_wandb_run(text_run, expected):
    records = wandb_records(text_run)
    summary = {}
    for record in records:
        summary.update(record.get("summary", {}).get("update", {}))
    assert summary["eval/tiny_choice/acc"] == pytest.approx(expected["tiny_choice/acc"])
    assert summary["eval/results._type"] == "table-file" and summary["eval/results.nrows"] == 5
    table = json.loads(next(text_run.glob("wandb/offline-run-*/files/media/table/eval/results_*.table.json"))
                       .read_text())
    assert table["columns"] == ["task", "metric", "filter", "value", "stderr"]
    assert {(row[0], row[1]) for row in table["data"]} >= {("tiny_choice", "acc"), ("tiny_gen", "exact_match")}


def test_evaluate_an_exported_folder_from_the_command_line(text_run, expected, tmp_path, capsys):
    folder = tmp_path / "hf"
    assert export_main([str(text_run), str(folder)]) == 0
    assert evaluate.main([str(folder), "--tasks", str(TASKS / "tiny_ppl.yaml"), "--batch-size", "3"]) == 0
    out = capsys.readouterr().out
    assert "| tiny_ppl | byte_perplexity | none |" in out
    got = values(folder / "eval_results.json")
    assert got["tiny_ppl/bits_per_byte"] == pytest.approx(expected["tiny_ppl/bits_per_byte"], rel=1e-5)
    # a second evaluation adds its task to the same files
    assert evaluate.main([str(folder), "--tasks", str(TASKS / "tiny_choice.yaml")]) == 0
    assert set(json.loads((folder / "eval_results.json").read_text())["results"]) == {"tiny_ppl", "tiny_choice"}
    assert "tiny_ppl" in (folder / "eval_results.md").read_text()


def test_truncated_contexts_score_the_last_window(text_run):
    # a context longer than the training length is cut on the left: the score is that of the last 33 tokens
    from lit_modules.export import load_model
    from lit_modules.harness import HarnessLM

    model, tok, _ = load_model(text_run)
    module = LanguageModel.load_from_checkpoint(text_run / "checkpoints" / "best.ckpt").eval()
    context, continuation = tok.encode("the cat sat on the mat and the dog ran to the door"), tok.encode(" all day")
    lm = HarnessLM(model, tok, batch_size=2)
    (score, _), = lm._loglikelihood_tokens([(None, context, continuation)])
    whole = (context + continuation)[-33:]
    assert score == pytest.approx(loglikelihood(module, whole, len(continuation)), rel=1e-5)


def test_task_data_that_needs_the_network_is_a_one_line_error(text_run, capsys):
    # the harness's own lambada_openai task, given by file (no 15 s index of every built-in task): its data is on
    # the hub, which the tests keep offline
    import lm_eval

    lambada = Path(lm_eval.__file__).parent / "tasks" / "lambada" / "lambada_openai.yaml"
    assert evaluate.main([str(text_run), "--tasks", str(lambada)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: task data could not be downloaded") and "hub" in err and "\n" not in err, err


def test_bad_model_or_task_is_one_line(text_run, capsys):
    assert evaluate.main(["nowhere", "--tasks", "x"]) == 2
    assert capsys.readouterr().err.startswith("error: MODEL: nowhere does not exist")
    assert evaluate.main([str(text_run), "--tasks", "nosuch.yaml"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: --tasks:") and "nosuch.yaml" in last, last


def test_text_outside_a_character_vocabulary_is_a_one_line_error(text_run, tmp_path, capsys):
    import shutil

    shutil.copy(TASKS / "docs.py", tmp_path)
    (tmp_path / "tiny.jsonl").write_text(json.dumps({**DOCS[0], "context": "The Cat sat on the"}) + "\n")
    (tmp_path / "upper.yaml").write_text((TASKS / "tiny_choice.yaml").read_text().replace("tiny_choice", "upper"))
    assert evaluate.main([str(text_run), "--tasks", str(tmp_path / "upper.yaml")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the harness's progress bars
    assert last.startswith("error: the tokenizer cannot encode a text of this task") and "Missing" in last, last


def test_eval_tasks_that_fail_after_training_keep_the_finished_run(tmp_path, capsys):
    # a task file that does not exist: the harness fails after training, which finished and keeps its summary
    from train import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat. " * 200)
    code = main(["experiment=lm_char", f"data.path={corpus}", f"data.cache_dir={tmp_path / 'cache'}",
                 "data.seq_len=16", "data.batch_size=4", "model.d_model=16", "model.repeat=1",
                 "model.mixers.attention.num_heads=2", "trainer.max_steps=2", "trainer.val_check_interval=2",
                 "trainer.eval_tasks=[nosuch.yaml]", "trainer.enable_progress_bar=false", "logging.wandb=false",
                 f"logging.out_dir={tmp_path / 'runs'}", "logging.name=r"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: --tasks:") and "nosuch.yaml" in err, err
    summary = json.loads((tmp_path / "runs" / "lm_char" / "r" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["step"] == 2
