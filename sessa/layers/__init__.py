"""nn.Modules: the gated block, the Sessa mixer/layer, RoPE and the authors'-API compatibility layer."""

from sessa.layers.block import GatedBlock
from sessa.layers.compat import convert_reference_state_dict, export_reference_state_dict
from sessa.layers.sessa import SessaLayer, SessaMixer

__all__ = [
    "GatedBlock", "SessaLayer", "SessaMixer", "convert_reference_state_dict", "export_reference_state_dict",
]
