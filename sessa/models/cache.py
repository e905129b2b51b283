"""SessaCache: a model's inference cache, one per-layer cache per block, in the form transformers expects.

transformers' `generate` reads a few attributes of a cache (`is_compileable`, `is_linear`,
`get_seq_length`, `reorder_cache` for beam search); they live here, at the model level, so the layers
stay free of transformers' conventions.
"""

from __future__ import annotations

import torch

from sessa.layers.cache import LayerCache
from sessa.utils.checks import check_int


class SessaCache:
    """Model-level cache: one `LayerCache` per layer (None until that layer's first cached forward)."""

    # Read by transformers' generate() on a cache passed in by the user: ours grows with the sequence
    # (no layer is fixed-size "linear"), is not a static compilable cache, and cannot be cropped.
    is_compileable = False
    is_croppable = False

    @property
    def is_linear(self) -> list[bool]:
        return [False] * len(self.layers)

    def __init__(self, n_layers: int) -> None:
        check_int("n_layers", n_layers, lo=1)
        self.layers: list[LayerCache | None] = [None] * n_layers

    def _first(self) -> LayerCache | None:
        return next((c for c in self.layers if c is not None), None)

    @property
    def seq_len(self) -> int:
        """Number of cached positions (padded ones included)."""
        first = self._first()
        return 0 if first is None else first.seq_len

    def get_seq_length(self) -> int:
        """Alias of seq_len (the transformers cache method name)."""
        return self.seq_len

    @property
    def batch_size(self) -> int | None:
        """Cached batch size, or None while the cache is empty."""
        first = self._first()
        return None if first is None else first.batch_size

    @property
    def attention_mask(self) -> torch.Tensor | None:
        """Bool [B, seq_len] mask of the cached positions, or None when none was padded."""
        first = self._first()
        return None if first is None else first.attention_mask

    def index_select(self, batch_idx: torch.Tensor) -> SessaCache:
        """A new cache with rows batch_idx of every layer (beam search)."""
        new = SessaCache(len(self.layers))
        new.layers = [None if c is None else c.index_select(batch_idx) for c in self.layers]
        return new

    def reorder_cache(self, beam_idx: torch.Tensor) -> None:
        """In-place variant of index_select (the transformers beam-search hook)."""
        self.layers = self.index_select(beam_idx).layers

    def __len__(self) -> int:
        return len(self.layers)

    def __repr__(self) -> str:
        n, b, t = len(self.layers), self.batch_size, self.seq_len
        return f"SessaCache(n_layers={n}, batch_size={b}, seq_len={t})"


__all__ = ["SessaCache"]
