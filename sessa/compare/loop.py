"""The bench's own small training and evaluation loop (fp32, one process, no checkpoints).

`sessa bench` needs the trained model in memory to score the test split per length / lag, and it must not
write logs or checkpoints per model; this loop uses the trainer's optimiser and schedule
(sessa.train.optim: AdamW on matrices, linear warmup then cosine to min_lr_ratio * lr, grad clipping), so
every model sees the identical budget: same steps, batch, schedule and data order for a given seed.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader

from sessa.models.config import SessaConfig
from sessa.models.lm import IGNORE_INDEX, SessaLM


@dataclass
class Budget:
    """What every model gets: optimizer steps, batch, schedule and evaluation size."""

    steps: int = 600
    batch_size: int = 16
    lr: float = 3e-3
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_batches: int | None = 16  # None: the whole test split
    eval_batch_size: int = 64
    time_limit_s: float | None = None  # optional safety cap per run (reported when it triggers)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from sessa.train.config import TrainConfig

        # validate with the trainer's rules so a budget accepted here is accepted by `sessa train` too
        TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr, warmup_steps=self.warmup_steps,
                    min_lr_ratio=self.min_lr_ratio, weight_decay=self.weight_decay, grad_clip=self.grad_clip,
                    eval_batches=self.eval_batches)
        if isinstance(self.eval_batch_size, bool) or not isinstance(self.eval_batch_size, int) \
                or self.eval_batch_size < 1:
            raise ValueError(f"eval_batch_size must be an int >= 1, got {self.eval_batch_size!r}")
        if self.time_limit_s is not None and not (isinstance(self.time_limit_s, (int, float))
                                                  and self.time_limit_s > 0):
            raise ValueError(f"time_limit_s must be a number > 0 or None, got {self.time_limit_s!r}")


def _loader(task: Any, split: str, batch_size: int, seed: int, shuffle: bool) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(task.dataset(split), batch_size=batch_size, shuffle=shuffle, generator=gen,
                      collate_fn=task.collate, drop_last=False)


def train_model(config: SessaConfig, task: Any, budget: Budget, seed: int) -> dict[str, Any]:
    """Train SessaLM(config) on task's train split; returns model, loss history, tokens/s and wall time."""
    from sessa.train.optim import build_optimizer, lr_factor

    torch.manual_seed(seed)
    model = SessaLM(config)
    opt = build_optimizer(model, budget.lr, budget.weight_decay, (0.9, 0.95), 1e-8)
    history: list[dict[str, float]] = []
    tokens, step, stopped_early = 0, 0, False
    t0 = time.perf_counter()
    model.train()
    while step < budget.steps:
        for batch in _loader(task, "train", budget.batch_size, seed + 1000 * step, shuffle=True):
            for g in opt.param_groups:
                g["lr"] = budget.lr * lr_factor(step, budget.steps, budget.warmup_steps, budget.min_lr_ratio)
            loss = model(batch["input_ids"], labels=batch["labels"]).loss
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{config.mixer} loss became {loss.item()} at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), budget.grad_clip)
            opt.step()
            tokens += batch["input_ids"].numel()
            history.append({"step": step, "loss": float(loss)})
            step += 1
            if budget.time_limit_s is not None and time.perf_counter() - t0 > budget.time_limit_s:
                stopped_early = True
            if step >= budget.steps or stopped_early:
                break
        if stopped_early:
            break
    wall = time.perf_counter() - t0
    return {"model": model, "history": history, "steps_done": step, "tokens_per_s": tokens / wall,
            "wall_time_s": wall, "stopped_early": stopped_early}


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
        lp = torch.log_softmax(model(ids).logits[:, :-1].float(), dim=-1)
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
