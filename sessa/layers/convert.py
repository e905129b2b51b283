"""Load the authors' layer weights: map their state_dict keys (SESSA.md section 2) onto ours."""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

# their suffix -> our suffix; anything before the suffix (e.g. "layers.3.") is kept as is
_RENAMES = {
    "ln.weight": "norm.weight",
    "ln.bias": "norm.bias",
    "W_in.weight": "in_proj.weight",
    "W_in.bias": "in_proj.bias",
    "W_out.weight": "out_proj.weight",
    "W_out.bias": "out_proj.bias",
    "mixer.q_proj.weight": "mixer.q_proj.weight",
    "mixer.q_proj.bias": "mixer.q_proj.bias",
    "mixer.k_proj.weight": "mixer.k_proj.weight",
    "mixer.k_proj.bias": "mixer.k_proj.bias",
    "mixer.v_proj.weight": "mixer.v_proj.weight",
    "mixer.v_proj.bias": "mixer.v_proj.bias",
    "mixer.out_proj.weight": "mixer.o_proj.weight",
    "mixer.proj_fb.weight": "mixer.fb_proj.weight",
    "mixer.proj_fb.bias": "mixer.fb_proj.bias",
    "mixer.gamma_bias": "mixer.gamma_bias",
    "mixer.gamma_ctx.weight": "mixer.gamma_proj.weight",
}
# buffers their module may carry, rebuilt on the fly here
_DROPPED = ("mixer.rope_inv_freq", "mixer.causal_mask_f_full", "mixer.causal_mask_fb_full")
_SUFFIX = re.compile(r"^(?P<prefix>(?:.*\.)?)(?P<suffix>" + "|".join(map(re.escape, [*_RENAMES, *_DROPPED])) + r")$")


def convert_reference_state_dict(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Turn the authors' per-layer keys (optionally under a prefix) into SessaLayer keys.

    Raises ValueError on a key that is neither a known parameter nor a known buffer, so nothing is
    silently ignored. `SessaLayer.load_state_dict(convert_reference_state_dict(sd))` reproduces their layer.
    """
    if not isinstance(sd, Mapping):
        raise TypeError(f"sd must be a mapping of parameter names to tensors, got {type(sd).__name__}")
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        m = _SUFFIX.match(key)
        if m is None:
            raise ValueError(f"unknown key in the reference state_dict: {key!r}")
        prefix, suffix = m.group("prefix"), m.group("suffix")
        if suffix in _DROPPED:
            continue
        if suffix == "mixer.gamma_bias":
            value = value.reshape(())  # stored as a scalar or a 1-element vector
        out[prefix + _RENAMES[suffix]] = value
    return out
