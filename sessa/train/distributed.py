"""torchrun integration: process group set-up (gloo on CPU, NCCL on CUDA), DDP / FSDP wrapping, reductions.

Nothing here launches processes: torchrun does (no home-made process management, issue 6).
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


def teardown(info: DistInfo) -> None:
    """Destroy the process group only if setup() created it (a caller's own group is left alone)."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, info: DistInfo, fsdp: bool) -> nn.Module:
    """DDP by default; with fsdp=True, FSDP2 `fully_shard` per gated block, then on the root (tied head)."""
    if not info.enabled:
        if fsdp:
            raise ValueError("fsdp=True needs several processes: launch with torchrun --nproc-per-node N")
        return model
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        for block in model.layers:
            fully_shard(block)
        fully_shard(model)
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
