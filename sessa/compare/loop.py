"""Training and test evaluation for `sessa bench`: one budget for every model, per-length / per-lag scores.

Training is `sessa.train.train` (AdamW on matrices, linear warmup then cosine to min_lr_ratio * lr, grad
clipping, the same seeded data order for every model), run in memory: no logs, no checkpoints, the trained
model returned. The test evaluation here adds what the trainer's does not: accuracy binned by sequence
length and, for recall tasks that report lags, by query lag.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch

from sessa.models.config import SessaConfig
from sessa.models.lm import IGNORE_INDEX, SessaLM
from sessa.utils.checks import check_int


@dataclass
class Budget:
    """What every model gets: optimizer steps, batch, schedule, precision and evaluation size."""

    steps: int = 500
    batch_size: int = 16
    lr: float = 3e-3
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_batches: int | None = 8  # test batches scored (None: the whole test split)
    eval_batch_size: int = 64
    precision: str = "fp32"
    device: str = "auto"

    def __post_init__(self) -> None:
        self.train_config(SessaConfig(), "symbolsoup", {}, 0)  # the trainer's own checks, naming the field
        check_int("eval_batch_size", self.eval_batch_size, lo=1)

    def train_config(self, model: SessaConfig, task: str, task_options: dict, seed: int):
        """The sessa.train.TrainConfig of one run (in memory: out_dir None, no progress bar)."""
        from sessa.train.config import TrainConfig

        return TrainConfig(
            model=model, task=task, task_options=dict(task_options), steps=self.steps,
            batch_size=self.batch_size, lr=self.lr, warmup_steps=self.warmup_steps,
            min_lr_ratio=self.min_lr_ratio, weight_decay=self.weight_decay, grad_clip=self.grad_clip,
            precision=self.precision, device=self.device, seed=seed, eval_every=0, eval_batches=1,
            out_dir=None, progress=False, tensorboard=False, log_every=1,
        )


def train_model(config: SessaConfig, task: Any, budget: Budget, seed: int) -> dict[str, Any]:
    """Train SessaLM(config) with sessa.train.train; returns model, loss history, tokens/s, wall time."""
    from sessa.train import train

    out = train(budget.train_config(config, task.name, task.options, seed), task=task, return_model=True)
    history = [{"step": h["step"], "loss": h["loss"]} for h in out["history"] if "loss" in h]
    return {"model": out["model"], "history": history, "steps_done": out["steps"],
            "tokens_per_s": out["tokens_per_s"], "wall_time_s": out["wall_time_s"]}


def _answer_lags(task: Any, split: str, index: int, T: int) -> list[int | None] | None:
    """Per-position lag (None where unknown) when the task's generator reports lags per scored position."""
    gen = getattr(task, "generate", None)
    if gen is None:
        return None
    ex = gen(split, index)
    lags, pos = getattr(ex, "lags", None), getattr(ex, "answer_positions", None)
    if not lags or not pos or len(pos) % len(lags):
        return None
    per_query = len(pos) // len(lags)  # value_len answer tokens per query, in query order
    out: list[int | None] = [None] * T
    for n, p in enumerate(pos):
        if p < T:
            out[p] = int(lags[n // per_query])
    return out


def bin_accuracy(values: list[int], correct: list[float], n_bins: int = 8) -> dict[str, Any]:
    """Accuracy in n_bins equal-width bins over the observed values: {"centers", "accuracy", "count"}."""
    if not values:
        return {"centers": [], "accuracy": [], "count": []}
    lo, hi = min(values), max(values)
    width = max(1, math.ceil((hi - lo + 1) / n_bins))
    hits: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for v, c in zip(values, correct, strict=True):
        cell = hits[(v - lo) // width]
        cell[0] += c
        cell[1] += 1
    keys = sorted(hits)
    return {"centers": [lo + (k + 0.5) * width - 0.5 for k in keys],
            "accuracy": [hits[k][0] / hits[k][1] for k in keys], "count": [int(hits[k][1]) for k in keys]}


@torch.no_grad()
def evaluate(model: SessaLM, task: Any, split: str, budget: Budget) -> dict[str, Any]:
    """Metrics on `split` (loss, accuracy = top-1, top5, perplexity) plus accuracy vs length and vs lag."""
    model.eval()
    device = next(model.parameters()).device
    data = task.dataset(split)
    n_examples = len(data)
    if budget.eval_batches is not None:
        n_examples = min(n_examples, budget.eval_batches * budget.eval_batch_size)
    sums: dict[str, float] = defaultdict(float)
    lengths, len_correct, lags, lag_correct = [], [], [], []
    for start in range(0, n_examples, budget.eval_batch_size):
        idx = list(range(start, min(n_examples, start + budget.eval_batch_size)))
        examples = [data[i] for i in idx]
        batch = task.collate(examples)
        ids, labels = batch["input_ids"], batch["labels"]
        target = labels[:, 1:]
        scored = target != IGNORE_INDEX
        if not bool(scored.any()):
            continue
        lp = torch.log_softmax(model(ids.to(device)).logits[:, :-1].float().cpu(), dim=-1)
        nll = -lp.gather(-1, target.clamp(min=0)[..., None]).squeeze(-1)
        top5 = lp.topk(min(5, lp.shape[-1]), dim=-1).indices
        hit = (top5[..., 0] == target) & scored
        hit5 = (top5 == target[..., None]).any(-1) & scored
        sums["nll"] += float(nll[scored].sum())
        sums["top1"] += float(hit.sum())
        sums["top5"] += float(hit5.sum())
        sums["n"] += int(scored.sum())
        for b, i in enumerate(idx):
            n_b = int(examples[b]["input_ids"].numel())
            pos = scored[b].nonzero().flatten().tolist()
            lengths += [n_b] * len(pos)
            len_correct += [float(hit[b, p]) for p in pos]
            lag_of = _answer_lags(task, split, i, ids.shape[1])
            if lag_of is not None:
                for p in pos:
                    if lag_of[p + 1] is not None:  # target[:, p] is labels[:, p + 1]
                        lags.append(lag_of[p + 1])
                        lag_correct.append(float(hit[b, p]))
    if sums["n"] == 0:
        raise ValueError(f"split {split!r} of task {task.name!r} has no scored tokens to evaluate")
    loss = sums["nll"] / sums["n"]
    out: dict[str, Any] = {
        "loss": loss, "perplexity": math.exp(min(loss, 50.0)), "accuracy": sums["top1"] / sums["n"],
        "top1": sums["top1"] / sums["n"], "top5": sums["top5"] / sums["n"], "scored_tokens": int(sums["n"]),
        "examples": n_examples, "by_length": bin_accuracy(lengths, len_correct),
    }
    if lags:
        out["by_lag"] = bin_accuracy(lags, lag_correct)
    return out
