"""Training and test evaluation for `sessa bench`: one budget for every model, per-length / per-lag scores.

The budget is a set of `sessa.train.TrainConfig` fields (a preset's "budget"); `bench_config` turns it into
the TrainConfig of one run, trained in memory by `sessa.train.train` (no logs, no checkpoints, the trained
model returned). The test evaluation is `sessa.train.evaluate` (the same loss, accuracy and perplexity as
`sessa eval`), plus accuracy binned by sequence length and, for recall tasks that report lags, by query lag.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

import torch

from sessa.models.config import SessaConfig
from sessa.train.config import TrainConfig
from sessa.train.evaluate import SUPPORTED_METRICS, evaluate

# what `sessa bench` fixes for every run: in memory, no progress bar, evaluation only at the end
IN_MEMORY: dict[str, Any] = {"out_dir": None, "resume": False, "progress": False, "tensorboard": False,
                             "log_every": 1, "eval_every": 0}
_PER_RUN = ("model", "task", "task_options", "seed")


def bench_config(budget: dict[str, Any], model: SessaConfig, task: Any, seed: int) -> TrainConfig:
    """The TrainConfig of one bench run: the budget's fields (checked by TrainConfig, unknown keys named),
    the model, the task and the seed; eval_batches / eval_batch_size also size the test evaluation."""
    if not isinstance(budget, dict):
        raise TypeError(f"budget must be a mapping of TrainConfig fields, got {type(budget).__name__}")
    fixed = sorted(set(budget) & {*_PER_RUN, *IN_MEMORY})
    if fixed:
        raise ValueError(f"budget keys {fixed} are set by sessa bench itself; remove them from the budget")
    run = {"model": model, "task": task.name, "task_options": dict(task.options), "seed": seed}
    return TrainConfig.from_dict({**budget, **IN_MEMORY, **run})


def budget_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The budget part of a run's TrainConfig (every field but the model, task, seed and in-memory ones)."""
    return {k: v for k, v in cfg.to_dict().items() if k not in _PER_RUN and k not in IN_MEMORY}


def train_model(cfg: TrainConfig, task: Any, progress_bar: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train SessaLM(cfg.model) with sessa.train.train; returns model, loss history, tokens/s, wall time."""
    from sessa.train import train

    out = train(cfg, task=task, return_model=True, progress_bar=progress_bar)
    history = [{"step": h["step"], "loss": h["loss"]} for h in out["history"] if "loss" in h]
    return {"model": out["model"], "history": history, "steps_done": out["steps"],
            "tokens_per_s": out["tokens_per_s"], "wall_time_s": out["wall_time_s"]}


def _answer_lags(task: Any, split: str, index: int) -> dict[int, int] | None:
    """position -> lag of each scored position whose lag the task reports: its own `answer_lags(split,
    index)`, or the lags per query of a recall generator's examples (`lags`, `answer_positions`)."""
    if hasattr(task, "answer_lags"):
        return task.answer_lags(split, index)
    gen = getattr(task, "generate", None)
    if gen is None:
        return None
    ex = gen(split, index)
    lags, pos = getattr(ex, "lags", None), getattr(ex, "answer_positions", None)
    if not lags or not pos or len(pos) % len(lags):
        return None
    per_query = len(pos) // len(lags)  # value_len answer tokens per query, in query order
    return {p: int(lags[n // per_query]) for n, p in enumerate(pos)}


def bin_accuracy(values: list[int], correct: list[float], n_bins: int = 8) -> dict[str, Any]:
    """Accuracy in n_bins equal-width bins over the observed values: {"centers" (the mean value in each bin),
    "accuracy", "count"}."""
    if not values:
        return {"centers": [], "accuracy": [], "count": []}
    lo, hi = min(values), max(values)
    width = max(1, math.ceil((hi - lo + 1) / n_bins))
    hits: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for v, c in zip(values, correct, strict=True):
        cell = hits[(v - lo) // width]
        cell[0] += c
        cell[1] += 1
        cell[2] += v
    keys = sorted(hits)
    return {"centers": [hits[k][2] / hits[k][1] for k in keys],
            "accuracy": [hits[k][0] / hits[k][1] for k in keys], "count": [int(hits[k][1]) for k in keys]}


def evaluate_binned(model: torch.nn.Module, task: Any, split: str, cfg: TrainConfig) -> dict[str, Any]:
    """sessa.train.evaluate's metrics on `split` (loss, accuracy = top-1, top5, perplexity) over
    cfg.eval_batches batches of cfg.eval_batch_size, plus accuracy vs length ("by_length") and vs lag, the
    number of examples scored and the chance level ("majority_accuracy": always the most frequent answer)."""
    lengths, len_correct, lags, lag_correct = [], [], [], []
    answers: Counter[int] = Counter()  # scored target tokens: the majority answer gives the chance level

    def observe(indices: list[int], examples: list[Any], scored: torch.Tensor, correct: torch.Tensor) -> None:
        scored, correct = scored.cpu(), correct.cpu()
        for b, i in enumerate(indices):
            n_b = int(examples[b]["input_ids"].numel())
            pos = scored[b].nonzero().flatten().tolist()
            answers.update(examples[b]["labels"][[p + 1 for p in pos]].tolist())
            lengths.extend([n_b] * len(pos))
            len_correct.extend(float(correct[b, p]) for p in pos)
            lag_of = _answer_lags(task, split, i)
            if lag_of is not None:
                for p in pos:
                    if p + 1 in lag_of:  # position p scores labels[:, p + 1]
                        lags.append(lag_of[p + 1])
                        lag_correct.append(float(correct[b, p]))

    batch_size = cfg.eval_batch_size or cfg.batch_size
    metrics = evaluate(model, task, split, cfg.eval_batches, batch_size=batch_size,
                       metric_names=SUPPORTED_METRICS, observe=observe)
    n_examples = len(task.dataset(split))
    if cfg.eval_batches is not None:
        n_examples = min(n_examples, cfg.eval_batches * batch_size)
    scored_tokens = metrics.pop("tokens")
    # chance level: the accuracy of always answering the most frequent scored target token
    majority = answers.most_common(1)[0][1] / sum(answers.values()) if answers else None
    out: dict[str, Any] = {**metrics, "scored_tokens": scored_tokens, "examples": n_examples,
                           "majority_accuracy": majority, "by_length": bin_accuracy(lengths, len_correct)}
    if lags:
        out["by_lag"] = bin_accuracy(lags, lag_correct)
    return out
