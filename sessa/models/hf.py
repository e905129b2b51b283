"""Hugging Face transformers integration: config/model classes, Auto* registration, core <-> HF conversion.

Importing this module registers model_type "sessa" with AutoConfig, AutoModel and AutoModelForCausalLM
(`import sessa` arranges it for the moment transformers is imported).
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM
from transformers.models.auto import modeling_auto

from sessa.models.hf_config import PEFT_TARGET_MODULES, SessaConfig, register_peft
from sessa.models.hf_model import SessaForCausalLM, SessaModel, SessaPreTrainedModel
from sessa.models.lm import SessaLM


def register() -> None:
    """Make AutoConfig / AutoModel / AutoModelForCausalLM build Sessa models (idempotent)."""
    AutoConfig.register(SessaConfig.model_type, SessaConfig, exist_ok=True)
    AutoModel.register(SessaConfig, SessaModel, exist_ok=True)
    AutoModelForCausalLM.register(SessaConfig, SessaForCausalLM, exist_ok=True)
    # the name table that tools such as lm-evaluation-harness consult to tell a causal LM (register()
    # above fills only the class mapping); a plain dict in transformers 5, so leave it alone otherwise
    names = getattr(modeling_auto, "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES", None)
    if isinstance(names, dict):
        names.setdefault(SessaConfig.model_type, SessaForCausalLM.__name__)
    register_peft()  # PEFT's default LoRA targets, if PEFT is already imported (else on first use)


def to_hf(core_model: SessaLM, **config_kwargs: Any) -> SessaForCausalLM:
    """A SessaForCausalLM holding a copy of core_model's weights (same logits bit for bit).

    config_kwargs set transformers-only fields, e.g. bos_token_id / eos_token_id / pad_token_id.
    """
    if not isinstance(core_model, SessaLM):
        raise TypeError(f"core_model must be a sessa.models.lm.SessaLM, got {type(core_model).__name__}")
    config = SessaConfig.from_core(core_model.config, **config_kwargs)
    param = next(core_model.parameters())
    model = SessaForCausalLM(config).to(device=param.device, dtype=param.dtype)
    model.load_state_dict(core_model.state_dict(), strict=True)  # the same weight names
    model.train(core_model.training)
    return model


def from_hf(hf_model: SessaForCausalLM) -> SessaLM:
    """The core SessaLM with a copy of hf_model's weights (same logits bit for bit)."""
    if not isinstance(hf_model, SessaForCausalLM):
        raise TypeError(f"hf_model must be a SessaForCausalLM, got {type(hf_model).__name__}")
    param = next(hf_model.parameters())
    core = SessaLM(hf_model.config.to_core()).to(device=param.device, dtype=param.dtype)
    core.load_state_dict(hf_model.state_dict(), strict=True)  # the same weight names; strict: nothing dropped
    core.train(hf_model.training)
    return core


register()

__all__ = [
    "SessaConfig",
    "SessaPreTrainedModel",
    "SessaModel",
    "SessaForCausalLM",
    "register",
    "register_peft",
    "PEFT_TARGET_MODULES",
    "to_hf",
    "from_hf",
]
