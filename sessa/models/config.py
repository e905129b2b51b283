"""SessaConfig: every hyper-parameter of a Sessa language model, validated on construction."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from sessa.ops import DEFAULT_CHUNK_SIZE
from sessa.utils.checks import check_bool, check_choice, check_float, check_gamma_max, check_heads, check_int


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
            check_int(name, getattr(self, name), lo=1)
        check_heads(self.d_model, self.n_heads, self.n_kv_heads, self.rope)
        check_gamma_max(self.gamma_max)
        for name in ("rope_theta", "ln_eps", "init_std"):
            check_float(name, getattr(self, name), lo=0.0, lo_open=True)
        for name in ("tie_embeddings", "feedback"):
            check_bool(name, getattr(self, name))
        if not isinstance(self.mixer, str):
            raise TypeError(f"mixer must be a str, got {self.mixer!r}")
        check_choice("impl", self.impl, ("auto", "chunk", "naive", "recurrent"))
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
