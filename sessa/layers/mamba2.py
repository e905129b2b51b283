"""Mamba2 mixer baseline: the transformers Mamba2Mixer (torch path, runs on CPU) inside the same gated block.

    [z, x, B, C, dt] = in_proj(a_bar);  x, B, C = SiLU(causal depthwise conv(x, B, C))
    h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t,   y_t = C_t h_t + D x_t      (selective SSM, per head)
    s = out_proj(RMSNorm(y) * SiLU(z))

We do not write the SSM ourselves: the module is `transformers.models.mamba2.modeling_mamba2.Mamba2Mixer`;
this file only maps our config onto its Mamba2Config and validates the options (`SessaConfig.mixer_options`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from sessa.layers.hf_kernels import note_cuda_fallback, quiet_fallback_notes
from sessa.utils.checks import check_hidden, check_int, check_mask

# Mamba2 options accepted in SessaConfig.mixer_options, with defaults suited to small models.
MAMBA2_DEFAULTS: dict[str, int] = {
    "expand": 2,  # intermediate width = expand * d_model
    "head_dim": 16,  # SSM head width; expand * d_model must be a multiple of it
    "state_size": 16,  # N, the SSM state per head
    "n_groups": 1,  # groups sharing B and C; must divide the number of SSM heads
    "conv_kernel": 4,
    "chunk_size": 32,  # chunk length of the torch chunked scan (32 was fastest on CPU at T ~ 128)
}


def mamba2_options(d_model: int, options: dict[str, Any] | None) -> dict[str, int]:
    """Merge options over MAMBA2_DEFAULTS and check them; returns the full set plus num_heads."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(MAMBA2_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown mamba2 mixer_options {unknown}; allowed: {sorted(MAMBA2_DEFAULTS)}")
    opts = {**MAMBA2_DEFAULTS, **options}
    check_int("d_model", d_model, lo=1)
    for name, value in opts.items():
        check_int(f"mixer_options[{name!r}]", value, lo=1)
    inner = opts["expand"] * d_model
    if inner % opts["head_dim"]:
        raise ValueError(
            f"mixer_options['head_dim'] ({opts['head_dim']}) must divide expand * d_model ({inner})"
        )
    num_heads = inner // opts["head_dim"]
    if num_heads % opts["n_groups"]:
        raise ValueError(
            f"mixer_options['n_groups'] ({opts['n_groups']}) must divide the SSM head count ({num_heads})"
        )
    return {**opts, "num_heads": num_heads}


class Mamba2Mixer(nn.Module):
    """s = transformers' Mamba2Mixer(a_bar): [B, T, D] -> [B, T, D], the transformers module doing all the work."""

    # what the mixer table needs (sessa.layers.mixers); parameter matching tunes the SSM state size N after
    # the width, because one width step moves the parameter count by several per cent
    summary: ClassVar[str] = "Mamba2 (transformers' module) in Sessa's gated block"
    accepts: ClassVar[frozenset[str]] = frozenset({"attention_mask"})
    options: ClassVar[dict[str, Any]] = MAMBA2_DEFAULTS
    match_option: ClassVar[str | None] = "state_size"

    def __init__(self, d_model: int, options: dict[str, Any] | None = None, ln_eps: float = 1e-5) -> None:
        super().__init__()
        from transformers.models.mamba2.configuration_mamba2 import Mamba2Config
        from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer as HFMamba2Mixer

        quiet_fallback_notes("mamba_split_conv1d_scan_combined", "mamba_chunk_scan_combined", "selective_state_update",
                             "causal_conv1d_fn", "causal_conv1d_update")  # the torch path is intended on CPU
        opts = mamba2_options(d_model, options)
        self.d_model, self.settings = d_model, opts  # the full options, num_heads included
        hf_config = Mamba2Config(
            hidden_size=d_model, num_heads=opts["num_heads"], head_dim=opts["head_dim"], expand=opts["expand"],
            state_size=opts["state_size"], n_groups=opts["n_groups"], conv_kernel=opts["conv_kernel"],
            chunk_size=opts["chunk_size"], num_hidden_layers=1, vocab_size=1, layer_norm_epsilon=ln_eps,
            pad_token_id=None, bos_token_id=None, eos_token_id=None,
        )
        self.mamba = HFMamba2Mixer(hf_config, layer_idx=0)

    @classmethod
    def from_config(cls, config: Any) -> Mamba2Mixer:
        """SessaConfig(mixer="mamba2", mixer_options={...}): d_model, ln_eps and the options (MAMBA2_DEFAULTS)."""
        return cls(config.d_model, config.mixer_options, config.ln_eps)

    @classmethod
    def check_options(cls, d_model: int, options: dict[str, Any]) -> None:
        mamba2_options(d_model, options)

    def forward(self, a: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """a_bar [B, T, D] -> s [B, T, D]; attention_mask [B, T] zeroes padded positions (HF convention)."""
        check_hidden("a", a, self.d_model, self.mamba.in_proj.weight.dtype)
        if a.is_cuda:
            note_cuda_fallback("mamba2", "mamba_ssm", "mamba-ssm causal-conv1d")
        if attention_mask is not None:
            check_mask("attention_mask", attention_mask, tuple(a.shape[:2]), "[B, T]")
        return self.mamba(a, attention_mask=attention_mask)

