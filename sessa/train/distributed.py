"""torchrun integration: process group set-up (gloo on CPU, NCCL on CUDA), DDP / FSDP wrapping, reductions.

Nothing here launches processes: torchrun does (no home-made process management).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistInfo:
    """Where this process sits: rank / world_size (1 when not under torchrun), its device, and ownership."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # True when train() created the process group (and must destroy it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an int, got {raw!r}") from None


def setup(device: str = "auto") -> DistInfo:
    """Read torchrun's env (RANK, WORLD_SIZE, LOCAL_RANK) and join/create the process group if needed."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", 0)
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but torch.cuda.is_available() is False")
    if use_cuda:
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    owns = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        owns = True
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev, owns_group=owns)


def teardown(info: DistInfo, clean: bool = True) -> None:
    """Destroy the process group only if setup() created it (a caller's own group is left alone)."""
    if info.owns_group and dist.is_initialized():
        try:
            # after a normal run all ranks meet first: a gloo peer that vanishes while another rank still
            # uses the group can abort it ("terminate called without an active exception"). After an error
            # the other ranks may never arrive, so no barrier then.
            if clean:
                dist.barrier()
        finally:
            dist.destroy_process_group()


def wrap_model(model: nn.Module, info: DistInfo, fsdp: bool) -> nn.Module:
    """DDP by default; with fsdp=True, FSDP2 `fully_shard` per gated block, then on the root (tied head)."""
    if not info.enabled:
        if fsdp:
            raise ValueError("fsdp=True needs several processes: launch with torchrun --nproc-per-node N")
        return model
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        # FSDP cannot shard 0-d parameters (b_gamma is a scalar, as in the authors' state_dict): keep them
        # replicated and average their gradients ourselves (sync_replicated_grads).
        scalars = [p for p in model.parameters() if p.dim() == 0]
        for block in model.model.layers:
            fully_shard(block, ignored_params={p for p in block.parameters() if p.dim() == 0} or None)
        fully_shard(model, ignored_params=set(scalars) or None)
        model._sessa_replicated = scalars
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DDP(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The SessaLM inside a DDP wrapper (FSDP2 shards in place, so it is already the SessaLM)."""
    return getattr(model, "module", model)


@contextlib.contextmanager
def grad_sync(model: nn.Module, sync: bool) -> Iterator[None]:
    """Skip the gradient all-reduce on all but the last micro-batch of an accumulation (DDP and FSDP2)."""
    if sync:
        yield
        return
    if hasattr(model, "no_sync"):
        with model.no_sync():
            yield
    elif hasattr(model, "set_requires_gradient_sync"):
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield


def sync_replicated_grads(model: nn.Module, info: DistInfo) -> None:
    """Average the gradients of the parameters FSDP leaves replicated (one flat all-reduce)."""
    params = [p for p in getattr(model, "_sessa_replicated", []) if p.grad is not None]
    if not params or not info.enabled:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= info.world_size
    for p, g in zip(params, flat.split([p.numel() for p in params]), strict=True):
        p.grad.copy_(g.view_as(p.grad))


def clip_grad_norm(model: nn.Module, max_norm: float, info: DistInfo) -> torch.Tensor:
    """Total gradient 2-norm (returned) and in-place clipping to max_norm, for plain, DDP and FSDP2 models.

    Same rule as torch.nn.utils.clip_grad_norm_ (coef = max_norm / (norm + 1e-6), capped at 1); under FSDP
    the squared norms of the local shards are summed with one all-reduce (torch's version cannot mix the
    sharded DTensor gradients with the replicated scalar ones).
    """
    if not hasattr(model, "_sessa_replicated"):
        return torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    sharded = [g.to_local() for g in grads if hasattr(g, "to_local")]
    plain = [g for g in grads if not hasattr(g, "to_local")]
    sq = torch.zeros((), dtype=torch.float32, device=info.device)
    for g in sharded:
        sq += g.float().pow(2).sum()
    all_reduce_sum(sq, info)
    for g in plain:
        sq += g.float().pow(2).sum()
    total = sq.sqrt()
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef.to(g.dtype))
    return total


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """In-place sum over ranks (identity on one process)."""
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def gather_objects(obj: object, info: DistInfo) -> list[object]:
    """[obj of rank 0, obj of rank 1, ...] on every rank (small JSON-able objects only)."""
    if not info.enabled:
        return [obj]
    out: list[object] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out




def broadcast_object(obj: object, info: DistInfo) -> object:
    """Rank 0's obj on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
