"""Layer boundaries: an input dtype that differs from the parameters is a clear TypeError (autocast excepted);
the bf16 gamma keeps |gamma| <= gamma_max < 1."""

import pytest
import torch

from sessa.layers.attention import AttentionMixer
from sessa.layers.block import GatedBlock
from sessa.layers.mamba2 import Mamba2Mixer
from sessa.layers.sessa import SessaLayer, SessaMixer
from sessa.utils.checks import debug_checks

D = 16
MODULES = {
    "sessa_layer": lambda: SessaLayer(D, n_heads=2),
    "sessa_mixer": lambda: SessaMixer(D, n_heads=2),
    "attention_mixer": lambda: AttentionMixer(D, n_heads=2),
    "attention_block": lambda: GatedBlock(D, AttentionMixer(D, n_heads=2)),
    "mamba2_mixer": lambda: Mamba2Mixer(D, {"head_dim": 8, "state_size": 8, "chunk_size": 4}),
}


@pytest.mark.parametrize("kind", list(MODULES))
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_input_dtype_must_match_the_parameters(kind, dtype):
    module = MODULES[kind]()
    x = torch.randn(2, 5, D)
    name = "x" if kind in ("sessa_layer", "attention_block") else "a"
    with pytest.raises(TypeError, match=rf"{name} has dtype {dtype} but the module's parameters are torch.float32"):
        module(x.to(dtype))
    assert module(x).dtype == torch.float32
    assert module.to(dtype)(x.to(dtype)).dtype == dtype  # a module cast to the input's dtype accepts it


@pytest.mark.parametrize("kind", list(MODULES))
def test_autocast_still_mixes_dtypes(kind):
    module = MODULES[kind]()
    x = torch.randn(2, 5, D)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for inp in (x, x.bfloat16()):  # the check steps aside: autocast casts per operation
            out = module(inp)
            assert out.shape == x.shape and torch.isfinite(out).all()


def test_bf16_autocast_gamma_stays_below_gamma_max():
    """gamma is computed in float32: in bf16, 0.999 * tanh(saturated) would round to exactly 1.0."""
    mixer = SessaMixer(D, n_heads=2, gamma_max=0.999)
    with torch.no_grad():
        mixer.gamma_bias.fill_(30.0)  # tanh saturates
    a = torch.randn(2, 9, D)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, _, gamma = mixer.feedback_inputs(a)
        assert torch.tensor(0.999, dtype=torch.bfloat16) == 1.0  # why float32 is needed
        assert gamma.dtype == torch.float32 and gamma.max() <= 0.999 and gamma.max() < 1.0
        with debug_checks():  # the |gamma| <= gamma_max check holds in the whole layer
            out = mixer(a)
    assert torch.isfinite(out).all()
