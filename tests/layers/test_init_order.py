"""Same seed, same weights as the authors' layer: our constructors draw in the order their layer does.

The authors' construction is stated here in our own words, as plain torch draws: the layer builds its
LayerNorm, W_in, then the mixer (W_q, W_k, W_v, the feedback projection, W_o when there are several heads,
b_gamma, w_gamma), then W_out. Every Linear keeps torch's default init: weight, then bias, each uniform in
+-1/sqrt(fan_in) (kaiming_uniform with a = sqrt(5) reduces to that bound); LayerNorm starts at (1, 0) and
b_gamma at 1.0, neither drawing random numbers.
"""

import math

import pytest
import torch
from torch import nn

from sessa.layers.block import GatedBlock
from sessa.layers.sessa import SessaLayer


def authors_order(D: int, H: int, Hkv: int) -> list[tuple[str, tuple[int, ...], str]]:
    """(our parameter name, shape, init rule) in the order the authors' SessaLayer creates them."""
    kv = Hkv * (D // H)
    linear = lambda name, n_out, bias=True: [(f"{name}.weight", (n_out, D), "uniform")] + (  # noqa: E731
        [(f"{name}.bias", (n_out,), "uniform")] if bias else []
    )
    order = [("norm.weight", (D,), "ones"), ("norm.bias", (D,), "zeros"), *linear("in_proj", 2 * D)]
    order += [*linear("mixer.q_proj", D), *linear("mixer.k_proj", kv), *linear("mixer.v_proj", kv)]
    order += linear("mixer.fb_proj", 2 * D)
    if H > 1:
        order += linear("mixer.o_proj", D, bias=False)
    order += [("mixer.gamma_bias", (), "one"), *linear("mixer.gamma_proj", 1, bias=False)]
    return order + linear("out_proj", D)


def authors_weights(seed: int, D: int, H: int, Hkv: int) -> dict[str, torch.Tensor]:
    """Replay the stated construction: the tensors their layer holds right after torch.manual_seed(seed)."""
    torch.manual_seed(seed)
    out = {}
    for name, shape, rule in authors_order(D, H, Hkv):
        if rule == "uniform":
            bound = 1.0 / math.sqrt(D)  # every Linear here reads width D
            out[name] = torch.empty(shape).uniform_(-bound, bound)
        else:
            out[name] = torch.full(shape, {"ones": 1.0, "zeros": 0.0, "one": 1.0}[rule])
    return out


@pytest.mark.parametrize("D,H,Hkv,rope", [(64, 4, 2, True), (16, 1, 1, True), (24, 3, 1, False), (32, 8, 8, True)])
@pytest.mark.parametrize("seed", [0, 1234])
def test_same_seed_gives_the_authors_weights(D, H, Hkv, rope, seed):
    want = authors_weights(seed, D, H, Hkv)
    torch.manual_seed(seed)
    layer = SessaLayer(D, H, Hkv, rope=rope)
    got = dict(layer.named_parameters())
    assert sorted(got) == sorted(want)  # every parameter is stated, none is extra
    for name, w in want.items():
        assert torch.equal(got[name].detach(), w), name
    # the statement is not vacuous: a different seed gives different weights
    assert not torch.equal(authors_weights(seed + 1, D, H, Hkv)["in_proj.weight"], want["in_proj.weight"])


def test_state_dict_names_unchanged():
    names = set(SessaLayer(8, 2).state_dict())
    assert names == {
        "norm.weight", "norm.bias", "in_proj.weight", "in_proj.bias", "out_proj.weight", "out_proj.bias",
        "mixer.q_proj.weight", "mixer.q_proj.bias", "mixer.k_proj.weight", "mixer.k_proj.bias",
        "mixer.v_proj.weight", "mixer.v_proj.bias", "mixer.o_proj.weight", "mixer.fb_proj.weight",
        "mixer.fb_proj.bias", "mixer.gamma_bias", "mixer.gamma_proj.weight",
    }


def test_block_takes_a_module_or_a_factory():
    torch.manual_seed(3)
    from_factory = GatedBlock(8, lambda: nn.Linear(8, 8))
    torch.manual_seed(3)
    w_in, mixer, w_out = nn.Linear(8, 16), nn.Linear(8, 8), nn.Linear(8, 8)  # LayerNorm draws nothing
    assert torch.equal(from_factory.in_proj.weight, w_in.weight)
    assert torch.equal(from_factory.mixer.weight, mixer.weight)  # drawn between W_in and W_out
    assert torch.equal(from_factory.out_proj.weight, w_out.weight)
    module = nn.Linear(8, 8)
    assert GatedBlock(8, module).mixer is module
    with pytest.raises(TypeError, match="mixer must be an nn.Module"):
        GatedBlock(8, lambda: 3)
    with pytest.raises(TypeError, match="mixer must be an nn.Module"):
        GatedBlock(8, "attention")
