"""SessaConfig for Hugging Face transformers (model_type "sessa"): the core fields as a PreTrainedConfig.

The architecture fields are inherited from `sessa.models.config.SessaFields` (names, types, defaults and
checks written once); the standard transformers names (hidden_size, num_hidden_layers, tie_word_embeddings,
...) are aliases via `attribute_map`, so generic transformers code reads the right values.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, ClassVar

from transformers import GenerationConfig, PreTrainedConfig

from sessa.models.config import FIELDS, SessaFields
from sessa.models.config import SessaConfig as CoreSessaConfig
from sessa.tokenization import BYTE_VOCAB_SIZE, EOS_ID, PAD_ID
from sessa.utils import did_you_mean
from sessa.utils.checks import check_bool, check_int

# keys transformers writes into config.json or passes while loading (PreTrainedConfig consumes them)
_TRANSFORMERS_KEYS = frozenset({
    "model_type", "torch_dtype", "num_labels", "name_or_path", "_name_or_path", "_commit_hash", "auto_map",
    "output_attentions", "attn_implementation", "experts_implementation", "per_layer_config",
    "_attn_implementation_internal", "_experts_implementation_internal",
})


class SessaConfig(PreTrainedConfig, SessaFields):
    """Hyper-parameters of a Sessa LM (the core SessaConfig's fields) + transformers' token ids and use_cache."""

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

    # the byte tokenizer's size (sessa.tokenization: 256 bytes + eos 256 + pad 257), so that SessaConfig()
    # works with it; the core config's default stays 256 (raw bytes)
    vocab_size: int = BYTE_VOCAB_SIZE
    # transformers-side fields (the architecture fields come from SessaFields); with vocab_size 258 and no
    # value given they default to the byte tokenizer's ids (bos = eos = 256, pad = 257), else to None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None
    use_cache: bool = True

    def __init__(self, **kwargs: Any) -> None:
        """Keyword arguments: the fields, their transformers aliases (hidden_size=... for d_model, ...) and the
        keys transformers itself saves or passes. An alias that contradicts its field, or any other key,
        raises ValueError naming it (a typo is never silently stored)."""
        for alias, name in self.attribute_map.items():
            if alias in kwargs:
                value = kwargs.pop(alias)
                if name in kwargs and kwargs[name] != value:
                    raise ValueError(f"{alias}={value!r} contradicts {name}={kwargs[name]!r} ({alias} is another "
                                     f"name for {name}); pass one of them")
                kwargs[name] = value
        if kwargs.get("vocab_size", BYTE_VOCAB_SIZE) == BYTE_VOCAB_SIZE:
            for name, value in _BYTE_TOKEN_IDS.items():
                kwargs.setdefault(name, value)
        fields = dataclasses.fields(self)
        names = {f.name for f in fields}
        for key in kwargs:
            if key not in names and key not in _TRANSFORMERS_KEYS and key not in _GENERATION_KEYS:
                raise ValueError(f"unknown SessaConfig key {key!r}{did_you_mean(key, [*FIELDS, *self.attribute_map])}"
                                 f"; fields: {list(FIELDS)}")
        for f in fields:
            if f.name in kwargs:
                value = kwargs.pop(f.name)
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            else:
                value = f.default
            setattr(self, f.name, value)
        self.__post_init__(**kwargs)

    def __post_init__(self, **kwargs: Any) -> None:
        self.check_fields()  # the same checks as the core config
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            check_int(name, getattr(self, name), lo=0, hi=self.vocab_size - 1, none_ok=True)
        check_bool("use_cache", self.use_cache)
        super().__post_init__(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """transformers' to_dict. PEFT reads the model type through it when wrapping a model, so this is where
        model type "sessa" joins PEFT's default LoRA targets (if PEFT is imported: see register_peft)."""
        register_peft()
        return super().to_dict()

    def to_core(self) -> CoreSessaConfig:
        """The plain `sessa.models.config.SessaConfig` with the same architecture fields."""
        return CoreSessaConfig(**{name: _copy(getattr(self, name)) for name in FIELDS})

    @classmethod
    def from_core(cls, core: CoreSessaConfig, **kwargs: Any) -> SessaConfig:
        """HF config from a core config; kwargs add transformers fields (token ids, use_cache, ...)."""
        if not isinstance(core, CoreSessaConfig):
            raise TypeError(f"core must be a sessa.models.config.SessaConfig, got {type(core).__name__}")
        clash = sorted(set(kwargs) & {*FIELDS, *cls.attribute_map})
        if clash:
            raise ValueError(f"{clash} come from the core config; change them there, not in kwargs")
        return cls(**{name: _copy(getattr(core, name)) for name in FIELDS}, **kwargs)


_BYTE_TOKEN_IDS = {"bos_token_id": EOS_ID, "eos_token_id": EOS_ID, "pad_token_id": PAD_ID}

# LoRA's default target modules: the attention-like projections of the Sessa / attention mixers and each
# gated block's input and output projections (present for every mixer); not the small gamma / feedback ones
PEFT_TARGET_MODULES: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "in_proj", "out_proj")


def register_peft() -> bool:
    """Add model type "sessa" -> PEFT_TARGET_MODULES to PEFT's default LoRA target modules, so that
    `get_peft_model(model, LoraConfig(task_type="CAUSAL_LM"))` needs no target_modules. Never imports
    PEFT (does nothing until it is imported); an entry already there is kept. True when registered."""
    constants = sys.modules.get("peft.utils.constants")
    mapping = getattr(constants, "TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING", None)
    if not isinstance(mapping, dict):
        return False
    mapping.setdefault(SessaConfig.model_type, list(PEFT_TARGET_MODULES))
    return True


# generation settings older configs may still carry (transformers moves them to GenerationConfig)
_GENERATION_KEYS = frozenset(GenerationConfig().to_dict())


def _copy(v: Any) -> Any:
    """Copy mutable values (mixer_options) so the two configs never share a dict."""
    return dict(v) if isinstance(v, dict) else v



__all__ = ["SessaConfig", "PEFT_TARGET_MODULES", "register_peft"]
