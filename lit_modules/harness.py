"""lm-evaluation-harness on a language model of this repository (docs/evaluation.md): ``HarnessLM`` answers the
harness's three request types with the Hugging Face model of lit_modules/hf_model.py, and ``run_tasks`` runs a task
list (harness task names or task YAML files) and returns the harness's results.

The harness's own ``hf`` model needs ``accelerate``; this adapter needs nothing beyond ``lm-eval`` and scores the
same way: a continuation's log-likelihood from one forward pass over context + continuation (left-truncated to the
model's training length), rolling windows of that length for perplexity tasks, greedy generation cut at the
task's stop strings."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from lm_eval.api.model import TemplateLM
from lm_eval.models.utils import handle_stop_sequences, postprocess_generated_text
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from tqdm import tqdm

from .text_generation import generate_texts

DEFAULT_MAX_LENGTH = 2048  # for models whose config records no training length


class HarnessError(RuntimeError):
    """A task or input the harness cannot evaluate, reported in one line."""


class HarnessLM(TemplateLM):
    def __init__(self, model, tokenizer, batch_size: int = 16, max_length: int | None = None):
        super().__init__()
        self.model, self.tokenizer, self.batch_size = model.eval(), tokenizer, batch_size
        self.max_length = max_length or model.config.max_position_embeddings or DEFAULT_MAX_LENGTH

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        try:
            return self.tokenizer.encode(string, add_special_tokens=False)
        except Exception as err:  # noqa: BLE001 - the tokenizers library raises a bare Exception
            raise HarnessError(f"the tokenizer cannot encode a text of this task ({err}); a character-level "
                               f"vocabulary holds only the characters of its training corpus") from None

    def tok_decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens)

    @torch.no_grad()
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        """requests: ((context, continuation), context ids, continuation ids). Longest first, batched with right
        padding: every mixer is causal, so padding after a row changes none of that row's outputs."""
        order = sorted(range(len(requests)), key=lambda i: -(len(requests[i][1]) + len(requests[i][2])))
        results: list = [None] * len(requests)
        for start in tqdm(range(0, len(order), self.batch_size), disable=disable_tqdm, desc="loglikelihood"):
            rows = []
            for i in order[start:start + self.batch_size]:
                whole = (requests[i][1] + requests[i][2])[-(self.max_length + 1):]
                scored = min(len(requests[i][2]), len(whole) - 1)  # the continuation, as far as it fits
                rows.append((i, whole[:-1], whole[len(whole) - scored:]))
            ids = torch.full((len(rows), max(len(r[1]) for r in rows)), self.eot_token_id, dtype=torch.long)
            for j, (_, inputs, _) in enumerate(rows):
                ids[j, :len(inputs)] = torch.tensor(inputs)
            logprobs = F.log_softmax(self.model(ids.to(self.model.device)).logits.float(), dim=-1).cpu()
            for j, (i, inputs, target) in enumerate(rows):
                span = logprobs[j, len(inputs) - len(target):len(inputs)]
                target = torch.tensor(target)
                answer = (float(span.gather(-1, target[:, None]).sum()), bool((span.argmax(-1) == target).all()))
                results[i] = answer
                if requests[i][0] is not None:
                    self.cache_hook.add_partial("loglikelihood", requests[i][0], answer)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        totals = []
        for (text,) in tqdm([r.args for r in requests], disable=disable_tqdm, desc="loglikelihood_rolling"):
            windows = [make_disjoint_window(w) for w in get_rolling_token_windows(
                token_list=self.tok_encode(text), prefix_token=self.prefix_token_id, max_seq_len=self.max_length,
                context_len=1)]
            scores = self._loglikelihood_tokens([(None, ctx, cont) for ctx, cont in windows], disable_tqdm=True)
            totals.append(sum(score for score, _ in scores))
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), totals[-1])
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        outputs = []
        for context, gen_kwargs in tqdm([r.args for r in requests], disable=disable_tqdm, desc="generate_until"):
            kwargs = dict(gen_kwargs)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=self.tok_decode([self.eot_token_id]))
            max_new = int(kwargs.pop("max_gen_toks", 256))
            temperature = float(kwargs.pop("temperature", 0.0)) if kwargs.pop("do_sample", False) else 0.0
            prompt = self.tok_decode(self.tok_encode(context)[-max(1, self.max_length - max_new):])
            text = generate_texts(self.model, self.tokenizer, [prompt], max_new_tokens=max_new,
                                  temperature=temperature)[0]
            outputs.append(postprocess_generated_text(text, until, None))
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), outputs[-1])
        return outputs


def run_tasks(model, tokenizer, tasks: list[str], *, limit: float | None = None, num_fewshot: int | None = None,
              batch_size: int = 16) -> dict:
    """The harness's results dict (``results``, ``n-shot``, ``versions``, ``configs``) for the tasks: harness task
    names or paths of task YAML files."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    if tokenizer is None:
        raise HarnessError("this model has no tokenizer (it trained on generated tokens): the harness scores text")
    # the harness indexes its ~15k built-in task files in 10-20 s; task YAML files alone do not need the index
    builtin = not all(str(t).endswith((".yaml", ".yml")) for t in tasks)
    results = simple_evaluate(model=HarnessLM(model, tokenizer, batch_size), tasks=list(tasks),
                              task_manager=TaskManager(include_defaults=builtin), limit=limit,
                              num_fewshot=num_fewshot, log_samples=False)
    return {k: results[k] for k in ("results", "n-shot", "versions", "configs", "higher_is_better") if k in results}


def result_rows(results: dict) -> list[dict]:
    """One row per task and metric: task, metric, filter, value, stderr."""
    rows = []
    for task, metrics in results["results"].items():
        for key, value in metrics.items():
            if "," not in key or "_stderr," in key or not isinstance(value, (int, float)):
                continue
            metric, filt = key.split(",", 1)
            stderr = metrics.get(f"{metric}_stderr,{filt}")
            rows.append({"task": task, "metric": metric, "filter": filt, "value": float(value),
                         "stderr": float(stderr) if isinstance(stderr, (int, float)) else None})
    return rows


def markdown_table(rows: list[dict]) -> str:
    lines = ["| task | metric | filter | value | ± stderr |", "|---|---|---|---|---|"]
    for r in rows:
        stderr = f"{r['stderr']:.4f}" if r["stderr"] is not None else ""
        lines.append(f"| {r['task']} | {r['metric']} | {r['filter']} | {r['value']:.4f} | {stderr} |")
    return "\n".join(lines) + "\n"
