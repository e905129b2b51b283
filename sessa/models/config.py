"""SessaConfig: every hyper-parameter of a Sessa language model, validated on construction.

The fields are written once, in `SessaFields`; the plain `SessaConfig` here and the Hugging Face config
(`sessa.models.hf_config.SessaConfig`) both inherit them and run the same checks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from sessa.layers.mixers import mixer_options
from sessa.ops import DEFAULT_CHUNK_SIZE
from sessa.utils import did_you_mean
from sessa.utils.checks import check_bool, check_choice, check_float, check_gamma_max, check_heads, check_int

IMPLS = ("auto", "chunk", "triton", "naive", "recurrent")
MAX_LAYERS = 4096  # documented limit: beyond it, building the module list alone takes minutes


@dataclass
class SessaFields:
    """Embedding -> n_layers x gated block (mixer: Sessa by default) -> final LayerNorm -> LM head.

    There is no separate MLP: the paper's block is the gated mixer block (docs/equations.md). `max_seq_len`
    is the context the model is meant for (data blocks, generation limit); the layer itself has no
    positional limit. `feedback=False` is the paper's ablation (s = f). `mixer` names an entry of
    `sessa.layers.mixers.MIXERS`; `mixer_options` are that mixer's options (unknown keys are an error).
    `n_layers` is at most MAX_LAYERS (4096); building a model whose float32 weights exceed the free memory
    is refused before anything is allocated (sessa.models.size).
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

    def check_fields(self) -> None:
        """Raise TypeError / ValueError naming the first field that is out of range."""
        for name in ("vocab_size", "d_model", "max_seq_len", "chunk_size"):
            check_int(name, getattr(self, name), lo=1)
        check_int("n_layers", self.n_layers, lo=1, hi=MAX_LAYERS)
        check_heads(self.d_model, self.n_heads, self.n_kv_heads, self.rope)
        check_gamma_max(self.gamma_max)
        for name in ("rope_theta", "ln_eps", "init_std"):
            check_float(name, getattr(self, name), lo=0.0, lo_open=True)
        for name in ("tie_embeddings", "feedback"):
            check_bool(name, getattr(self, name))
        check_choice("impl", self.impl, IMPLS)
        if not isinstance(self.mixer_options, dict):
            raise TypeError(f"mixer_options must be a dict, got {type(self.mixer_options).__name__}")
        mixer_options(self)  # the mixer's name and its options

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


# the architecture fields, in order (shared by both configs)
FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SessaFields))


@dataclass
class SessaConfig(SessaFields):
    """The torch-only model config (see SessaFields for the fields); `to_dict` / `from_dict` for JSON."""

    def __post_init__(self) -> None:
        self.check_fields()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SessaConfig:
        """Build from a dict; an unknown key raises ValueError naming it and the nearest field."""
        if not isinstance(d, dict):
            raise TypeError(f"config must be a dict, got {type(d).__name__}")
        for key in d:
            if key not in FIELDS:
                raise ValueError(f"unknown SessaConfig field {key!r}{did_you_mean(key, FIELDS)}; "
                                 f"fields: {list(FIELDS)}")
        return cls(**d)


__all__ = ["SessaConfig", "SessaFields", "FIELDS", "IMPLS", "MAX_LAYERS"]
