"""SessaConfig for Hugging Face transformers (model_type "sessa"): the core config's fields as a PreTrainedConfig.

The field names and defaults are those of the plain dataclass `sessa.models.config.SessaConfig`; the
standard transformers names (hidden_size, num_hidden_layers, tie_word_embeddings, ...) are aliases via
`attribute_map`, so generic transformers code reads the right values.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from transformers import PreTrainedConfig

from sessa.models.config import SessaConfig as CoreSessaConfig
from sessa.ops import DEFAULT_CHUNK_SIZE
from sessa.utils.checks import check_bool, check_int

# the fields shared with the core dataclass, in its order (the HF config adds token ids and use_cache)
CORE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(CoreSessaConfig))


class SessaConfig(PreTrainedConfig):
    """Hyper-parameters of a Sessa LM (same names/defaults as the core SessaConfig) + HF token ids."""

    model_type: ClassVar[str] = "sessa"
    attribute_map: ClassVar[dict[str, str]] = {
        "hidden_size": "d_model",
        "num_hidden_layers": "n_layers",
        "num_attention_heads": "n_heads",
        "num_key_value_heads": "n_kv_heads",
        "tie_word_embeddings": "tie_embeddings",
        "max_position_embeddings": "max_seq_len",
        "layer_norm_eps": "ln_eps",
    }

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
    mixer_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    # transformers-side fields
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None
    use_cache: bool = True

    def __post_init__(self, **kwargs: Any) -> None:
        # Validate with the core dataclass so both configs accept exactly the same values.
        self.to_core()
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            check_int(name, getattr(self, name), lo=0, hi=self.vocab_size - 1, none_ok=True)
        check_bool("use_cache", self.use_cache)
        super().__post_init__(**kwargs)

    def to_core(self) -> CoreSessaConfig:
        """The plain `sessa.models.config.SessaConfig` with the same architecture fields."""
        return CoreSessaConfig(**{name: _copy(getattr(self, name)) for name in CORE_FIELDS})

    @classmethod
    def from_core(cls, core: CoreSessaConfig, **kwargs: Any) -> SessaConfig:
        """HF config from a core config; kwargs add transformers fields (token ids, use_cache, ...)."""
        if not isinstance(core, CoreSessaConfig):
            raise TypeError(f"core must be a sessa.models.config.SessaConfig, got {type(core).__name__}")
        clash = sorted(set(kwargs) & set(CORE_FIELDS))
        if clash:
            raise ValueError(f"{clash} come from the core config; change them there, not in kwargs")
        return cls(**{name: _copy(getattr(core, name)) for name in CORE_FIELDS}, **kwargs)


def _copy(v: Any) -> Any:
    """Copy mutable values (mixer_options) so the two configs never share a dict."""
    return dict(v) if isinstance(v, dict) else v


__all__ = ["SessaConfig", "CORE_FIELDS"]
