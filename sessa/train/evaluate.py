"""evaluate(model, task, split, batches): token-level metrics over the scored positions of a split.

Position t predicts labels[t + 1] (the LM's shift); positions labelled IGNORE_INDEX are not scored, so for
classification tasks (one scored label token) token accuracy is the classification accuracy.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sessa.models.lm import IGNORE_INDEX
from sessa.train.distributed import DistInfo, all_reduce_sum
from sessa.utils.checks import check_int

SUPPORTED_METRICS = ("loss", "perplexity", "accuracy", "top1", "top5")


def check_metric_names(names: object) -> tuple[str, ...]:
    """The trainer computes these names; anything else is a clear error (not a silent omission)."""
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"task.metric_names must be a sequence of str, got {names!r}")
    unknown = [n for n in names if n not in SUPPORTED_METRICS]
    if unknown:
        raise ValueError(f"task.metric_names {unknown} are not computed by sessa.train; supported: "
                         f"{list(SUPPORTED_METRICS)}")
    return tuple(names)


def token_stats(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[loss_sum, n_scored, top1_correct, top5_correct] (float64) for one batch, shifted by one position."""
    logits = logits[:, :-1].float()
    target = labels[:, 1:]
    mask = target != IGNORE_INDEX
    if not bool(mask.any()):
        return torch.zeros(4, dtype=torch.float64, device=logits.device)
    lg, tg = logits[mask], target[mask]
    loss_sum = F.cross_entropy(lg, tg, reduction="sum")
    k = min(5, lg.shape[-1])
    top = lg.topk(k, dim=-1).indices
    hit = top == tg[:, None]
    return torch.stack([loss_sum.double(), torch.tensor(float(tg.numel()), dtype=torch.float64, device=lg.device),
                        hit[:, 0].sum().double(), hit.any(-1).sum().double()])


def finish_metrics(stats: torch.Tensor, names: tuple[str, ...]) -> dict[str, float]:
    """Turn summed token_stats into the requested metrics."""
    loss_sum, n, c1, c5 = (float(x) for x in stats.tolist())
    if n == 0:
        raise ValueError("the evaluation split has no scored positions (all labels are IGNORE_INDEX)")
    loss = loss_sum / n
    values = {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "accuracy": c1 / n, "top1": c1 / n,
              "top5": c5 / n}
    out = {name: values[name] for name in names}
    out["tokens"] = int(n)
    return out


@torch.no_grad()
def evaluate(model: nn.Module, task: Any, split: str = "validation", batches: int | None = None, *,
             batch_size: int = 32, micro_batch_size: int | None = None, precision: str = "fp32",
             info: DistInfo | None = None) -> dict[str, float]:
    """Metrics (task.metric_names, plus 'tokens' scored) over the first `batches` batches of `split`.

    batches=None evaluates the whole split. Under torchrun every rank evaluates its share of each batch
    and the sums are all-reduced, so every rank returns the same numbers.
    """
    names = check_metric_names(task.metric_names)
    check_int("batch_size", batch_size, lo=1)
    check_int("batches", batches, lo=1, none_ok=True)  # None: the whole split
    info = info or DistInfo(device=next(model.parameters()).device)
    micro = micro_batch_size or batch_size
    dataset = task.dataset(split)
    n = len(dataset) if batches is None else min(len(dataset), batches * batch_size)
    if n == 0:
        raise ValueError(f"the {split!r} split is empty")
    was_training = model.training
    model.eval()
    stats = torch.zeros(4, dtype=torch.float64, device=info.device)
    autocast = torch.autocast(info.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    for start in range(0, n, batch_size):
        idx = list(range(start, min(n, start + batch_size)))
        share = -(-len(idx) // info.world_size)
        mine = idx[info.rank * share:(info.rank + 1) * share]
        # every rank makes the same number of forward calls (FSDP all-gathers inside forward)
        for c in range(-(-share // micro)):
            chunk = mine[c * micro:(c + 1) * micro]
            batch = task.collate([dataset[i] for i in (chunk or idx[:1])])
            ids, labels = batch["input_ids"].to(info.device), batch["labels"].to(info.device)
            with autocast:
                logits = model(ids).logits
            if chunk:
                stats += token_stats(logits, labels)
    all_reduce_sum(stats, info)
    model.train(was_training)
    return finish_metrics(stats.cpu(), names)
