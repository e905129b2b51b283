"""evaluate(model, task, split, batches): token-level metrics over the scored positions of a split.

Position t predicts labels[t + 1] (the LM's shift); positions labelled IGNORE_INDEX are not scored, so for
classification tasks (one scored label token) token accuracy is the classification accuracy. The loss is
`lm_loss` (the training loss) averaged over every scored token of the split; perplexity = exp(loss).
`sessa eval`, the trainer and `sessa bench` all report these numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from sessa.models.lm import lm_loss
from sessa.train.distributed import DistInfo, all_reduce_sum
from sessa.utils import IGNORE_INDEX
from sessa.utils.checks import check_int

SUPPORTED_METRICS = ("loss", "perplexity", "accuracy", "top1", "top5")
# exp() overflows a float64 past a mean NLL of ~709.8: beyond this the perplexity is reported as exp(700)
MAX_LOG_PERPLEXITY = 700.0
# observe(indices, examples, scored [b, T-1], correct [b, T-1]) sees each evaluated batch (see evaluate)
Observer = Callable[[list[int], list[Any], torch.Tensor, torch.Tensor], None]


def perplexity(loss: float) -> float:
    """exp(mean token NLL), the NLL clamped at MAX_LOG_PERPLEXITY so a diverged model does not overflow."""
    return math.exp(min(loss, MAX_LOG_PERPLEXITY))


def check_metric_names(names: object) -> tuple[str, ...]:
    """The trainer computes these names; anything else is a clear error (not a silent omission)."""
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"task.metric_names must be a sequence of str, got {names!r}")
    unknown = [n for n in names if n not in SUPPORTED_METRICS]
    if unknown:
        raise ValueError(f"task.metric_names {unknown} are not computed by sessa.train; supported: "
                         f"{list(SUPPORTED_METRICS)}")
    return tuple(names)


def token_stats(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batch: ([loss_sum, n_scored, top1_correct, top5_correct] float64, scored [B, T-1], top-1 correct
    [B, T-1]), shifted by one position (logits at t score labels[t + 1])."""
    target = labels[:, 1:]
    scored = target != IGNORE_INDEX
    top = logits[:, :-1].float().topk(min(5, logits.shape[-1]), dim=-1).indices
    hits = (top == target[..., None]) & scored[..., None]
    stats = torch.stack([lm_loss(logits, labels, reduction="sum").double(), scored.sum().double(),
                         hits[..., 0].sum().double(), hits.any(-1).sum().double()])
    return stats, scored, hits[..., 0]


def finish_metrics(stats: torch.Tensor, names: tuple[str, ...]) -> dict[str, float]:
    """Turn summed token_stats into the requested metrics."""
    loss_sum, n, c1, c5 = (float(x) for x in stats.tolist())
    if n == 0:
        raise ValueError("the evaluation split has no scored positions (all labels are IGNORE_INDEX)")
    loss = loss_sum / n
    values = {"loss": loss, "perplexity": perplexity(loss), "accuracy": c1 / n, "top1": c1 / n,
              "top5": c5 / n}
    out = {name: values[name] for name in names}
    out["tokens"] = int(n)
    return out


@torch.no_grad()
def evaluate(model: nn.Module, task: Any, split: str = "validation", batches: int | None = None, *,
             batch_size: int = 32, micro_batch_size: int | None = None, precision: str = "fp32",
             info: DistInfo | None = None, metric_names: Sequence[str] | None = None,
             observe: Observer | None = None) -> dict[str, float]:
    """Metrics (metric_names, default task.metric_names, plus 'tokens' scored) over the first `batches`
    batches of `split`.

    batches=None evaluates the whole split. Under torchrun every rank evaluates its share of each batch
    and the sums are all-reduced, so every rank returns the same numbers. observe, if given, is called
    on each evaluated micro-batch with its example indices, the examples, and the scored / top-1 correct
    masks [b, T-1] (how `sessa bench` bins accuracy by length and lag).
    """
    names = check_metric_names(task.metric_names if metric_names is None else metric_names)
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
            examples = [dataset[i] for i in (chunk or idx[:1])]
            batch = task.collate(examples)
            ids, labels = batch["input_ids"].to(info.device), batch["labels"].to(info.device)
            with autocast:
                logits = model(ids).logits
            if chunk:
                batch_stats, scored, correct = token_stats(logits, labels)
                stats += batch_stats
                if observe is not None:
                    observe(chunk, examples, scored, correct)
    all_reduce_sum(stats, info)
    model.train(was_training)
    return finish_metrics(stats.cpu(), names)
