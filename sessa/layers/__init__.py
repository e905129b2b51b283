"""nn.Modules: the gated block, the Sessa mixer/layer, RoPE and the reference-weight converter."""

from sessa.layers.block import GatedBlock
from sessa.layers.convert import convert_reference_state_dict
from sessa.layers.sessa import SessaLayer, SessaMixer

__all__ = ["GatedBlock", "SessaLayer", "SessaMixer", "convert_reference_state_dict"]
