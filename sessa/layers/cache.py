"""Per-layer inference caches (docs/equations.md §3); the model-level list of them is sessa.models.cache.

A Sessa layer caches, for every past position: forward keys K (after RoPE) and values V [B, Tp, Hkv, d],
feedback keys k_b and past mixer outputs s [B, Tp, 1, D], the attention mask of the past [B, Tp] (left
padding) and the next RoPE position of every row [B] (= number of real tokens so far).

Buffers grow by capacity doubling, so appending one token copies O(new) data (amortised), not the whole
cache. Under autograd (new tensors that require grad) appends fall back to torch.cat so no tensor saved for
backward is overwritten in place. The Sessa mixer creates its `SessaLayerCache` on its first cached call; a
new mixer that decodes would subclass `LayerCache` for the mask and position bookkeeping and declare
"cache" in its `accepts`.
"""

from __future__ import annotations

import torch

from sessa.utils.checks import check_in_range, check_tensor


class GrowableBuffer:
    """A tensor that grows along dimension `dim` with amortised O(1) appends (capacity doubling)."""

    def __init__(self, data: torch.Tensor, length: int | None = None, dim: int = 1) -> None:
        self.data, self.dim = data, dim  # positions >= length along dim are unused capacity
        self.length = data.shape[dim] if length is None else length

    @property
    def value(self) -> torch.Tensor:
        """The filled part (a view: read it before the next append)."""
        return self.data.narrow(self.dim, 0, self.length)

    def append(self, x: torch.Tensor) -> None:
        """Append x (same shape as data except along dim)."""
        n, t = self.length, x.shape[self.dim]
        if torch.is_grad_enabled() and (x.requires_grad or self.data.requires_grad):
            # functional growth: an in-place write would invalidate tensors saved for backward
            self.data = torch.cat([self.value, x.to(self.data.dtype)], dim=self.dim)
            self.length = n + t
            return
        if n + t > self.data.shape[self.dim]:
            shape = list(self.data.shape)
            shape[self.dim] = max(2 * shape[self.dim], n + t, 16)
            new = self.data.new_empty(shape)
            new.narrow(self.dim, 0, n).copy_(self.value)
            self.data = new
        self.data.narrow(self.dim, n, t).copy_(x)
        self.length = n + t

    def index_select(self, batch_idx: torch.Tensor) -> GrowableBuffer:
        """A compact copy keeping rows batch_idx of dim 0."""
        return GrowableBuffer(self.value.index_select(0, batch_idx), self.length, self.dim)


class LayerCache:
    """Base class of a per-layer cache: past mask [B, n] (None = all real) and next positions [B]."""

    def __init__(self, batch_size: int, device: torch.device | str | None = None) -> None:
        self.batch_size = batch_size
        self.mask: GrowableBuffer | None = None  # bool; created on the first padded input
        self.next_positions = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.seq_len = 0

    @property
    def attention_mask(self) -> torch.Tensor | None:
        """Bool [B, n] mask of the past (1 = real token), or None when no token was padded."""
        return None if self.mask is None else self.mask.value

    def _buffers(self) -> dict[str, GrowableBuffer]:
        """The mixer's growable tensors by name (subclasses)."""
        return {}

    def append_mask(self, new_mask: torch.Tensor | None, n_new: int) -> None:
        """Record the mask [B, T] of n_new new tokens (None = all real) and advance the positions."""
        if new_mask is None:
            if self.mask is not None:
                ones = torch.ones(self.batch_size, n_new, dtype=torch.bool, device=self.mask.data.device)
                self.mask.append(ones)
            self.next_positions = self.next_positions + n_new
        else:
            new_mask = new_mask.to(torch.bool)
            if self.mask is None:
                past = torch.ones(self.batch_size, self.seq_len, dtype=torch.bool, device=new_mask.device)
                self.mask = GrowableBuffer(past)
            self.mask.append(new_mask)
            self.next_positions = self.next_positions + new_mask.sum(dim=1)
        self.seq_len += n_new

    def index_select(self, batch_idx: torch.Tensor) -> LayerCache:
        """A new cache holding rows batch_idx (beam search: the parent of every beam)."""
        batch_idx = _check_batch_idx(batch_idx, self.batch_size)
        new = self.__class__.__new__(self.__class__)
        new.__dict__.update(self.__dict__)
        new.batch_size = batch_idx.numel()
        new.mask = None if self.mask is None else self.mask.index_select(batch_idx.to(self.mask.data.device))
        new.next_positions = self.next_positions.index_select(0, batch_idx.to(self.next_positions.device))
        for name, buf in self._buffers().items():
            setattr(new, name, buf.index_select(batch_idx.to(buf.data.device)))
        return new


class SessaLayerCache(LayerCache):
    """Past of one Sessa layer: k, v [B, n, Hkv, d] (k after RoPE), k_b, s [B, n, 1, D]."""

    def __init__(
        self, batch_size: int, n_kv_heads: int, head_dim: int, d_model: int, *,
        dtype: torch.dtype, device: torch.device | str | None = None, feedback: bool = True,
    ) -> None:
        super().__init__(batch_size, device)
        self.n_kv_heads, self.head_dim, self.d_model, self.feedback = n_kv_heads, head_dim, d_model, feedback
        # stored head-major [B, Hkv, n, d] so each head's keys are contiguous for SDPA (as in KV caches)
        kv = torch.empty(batch_size, n_kv_heads, 0, head_dim, dtype=dtype, device=device)
        self._k, self._v = GrowableBuffer(kv, dim=2), GrowableBuffer(kv.clone(), dim=2)
        fb = torch.empty(batch_size, 0, 1, d_model, dtype=dtype, device=device)
        # without the feedback branch (ablation) only K/V are kept
        self._k_b = GrowableBuffer(fb) if feedback else None
        self._s = GrowableBuffer(fb.clone()) if feedback else None

    def _buffers(self) -> dict[str, GrowableBuffer]:
        bufs = {"_k": self._k, "_v": self._v}
        if self.feedback:
            bufs.update(_k_b=self._k_b, _s=self._s)
        return bufs

    @property
    def k(self) -> torch.Tensor:
        """Forward keys after RoPE [B, n, Hkv, d] (a transposed view of the head-major storage)."""
        return self._k.value.transpose(1, 2)

    @property
    def v(self) -> torch.Tensor:
        """Forward values [B, n, Hkv, d]."""
        return self._v.value.transpose(1, 2)

    @property
    def k_b(self) -> torch.Tensor | None:
        """Feedback keys [B, n, 1, D] (None without the feedback branch)."""
        return None if self._k_b is None else self._k_b.value

    @property
    def s(self) -> torch.Tensor | None:
        """Past mixer outputs s [B, n, 1, D] (None without the feedback branch)."""
        return None if self._s is None else self._s.value

    def append_kv(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Append forward keys (after RoPE) and values [B, T, Hkv, d] of the new tokens."""
        self._k.append(k.transpose(1, 2))
        self._v.append(v.transpose(1, 2))

    def append_feedback(self, k_b: torch.Tensor, s: torch.Tensor) -> None:
        """Append feedback keys and solutions [B, T, 1, D] of the new tokens."""
        self._k_b.append(k_b)
        self._s.append(s)

    def truncate(self, n: int) -> None:
        """Forget positions >= n of the model buffers (undo a failed append; the mask is appended last)."""
        for buf in self._buffers().values():
            buf.length = min(buf.length, n)

    def check_compatible(
        self, batch_size: int, n_kv_heads: int, head_dim: int, d_model: int, feedback: bool
    ) -> None:
        """Raise ValueError unless this cache was made by a mixer of this shape for this batch size."""
        if self.batch_size != batch_size:
            raise ValueError(f"cache holds batch size {self.batch_size}, but the input has B = {batch_size}")
        mine = (self.n_kv_heads, self.head_dim, self.d_model, self.feedback)
        if mine != (n_kv_heads, head_dim, d_model, feedback):
            raise ValueError(
                f"cache was built for (n_kv_heads, head_dim, d_model, feedback) = {mine}, "
                f"this mixer has {(n_kv_heads, head_dim, d_model, feedback)}"
            )


def _check_batch_idx(batch_idx: object, batch_size: int) -> torch.Tensor:
    """1-D integer tensor of row indices in [0, batch_size) (the range is checked in debug mode)."""
    idx = check_tensor("batch_idx", batch_idx, ndim=1, integer=True)
    if idx.numel() == 0:
        raise ValueError("batch_idx must select at least one row")
    check_in_range("batch_idx", idx, 0, batch_size - 1, rule=f"entries must lie in [0, {batch_size})")
    return idx.long()


__all__ = ["GrowableBuffer", "LayerCache", "SessaLayerCache"]
