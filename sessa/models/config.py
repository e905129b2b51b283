"""SessaConfig: every hyper-parameter of a Sessa language model, validated on construction."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from sessa.layers.checks import check_gamma_max, check_heads, check_positive_float
from sessa.ops import DEFAULT_CHUNK_SIZE
from sessa.ops.utils import check_positive_int


@dataclass
class SessaConfig:
    """Embedding -> n_layers x gated block (mixer: Sessa by default) -> final LayerNorm -> LM head.

    There is no separate MLP: the paper's block is the gated mixer block (PAPER_NOTES.md, "The model").
    `max_seq_len` is the context the model is meant for (data blocks, generation limit); the layer itself
    has no positional limit. `feedback=False` is the paper's ablation (s = f).
    """

    vocab_size: int = 256
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 1
    n_kv_heads: int | None = None
    gamma_max: float = 0.999
    rope: bool = True
    rope_theta: float = 10000.0
    max_seq_len: int = 2048
    tie_embeddings: bool = True
    ln_eps: float = 1e-5
    feedback: bool = True
    mixer: str = "sessa"
    impl: str = "auto"
    chunk_size: int = DEFAULT_CHUNK_SIZE
    init_std: float = 0.02
    mixer_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "max_seq_len", "chunk_size"):
            check_positive_int(name, getattr(self, name))
        check_heads(self.d_model, self.n_heads, self.n_kv_heads, self.rope)
        check_gamma_max(self.gamma_max)
        check_positive_float("rope_theta", self.rope_theta)
        check_positive_float("ln_eps", self.ln_eps)
        check_positive_float("init_std", self.init_std)
        for name in ("tie_embeddings", "feedback"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if not isinstance(self.mixer, str):
            raise TypeError(f"mixer must be a str, got {self.mixer!r}")
        if self.impl not in ("auto", "chunk", "triton", "naive", "recurrent"):
            raise ValueError(f"impl must be one of auto, chunk, triton, naive, recurrent; got {self.impl!r}")
        if not isinstance(self.mixer_options, dict):
            raise TypeError(f"mixer_options must be a dict, got {type(self.mixer_options).__name__}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SessaConfig:
        """Build from a dict; unknown keys raise ValueError (nothing is silently dropped)."""
        if not isinstance(d, dict):
            raise TypeError(f"config must be a dict, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown SessaConfig fields {unknown}; allowed: {sorted(known)}")
        return cls(**d)
