"""Every mixer of the table through the Hugging Face classes: conversion and save/load give the same logits,
generate works (through the mixer's cache, or by recomputing the prefix when it has none) and refuses a
cache the mixer cannot keep; missing weights of a Gated DeltaNet checkpoint get their initial values."""

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

import sessa  # noqa: F401  (registers the Auto classes)
from sessa.layers.mixers import MIXERS
from sessa.models.hf import SessaConfig, SessaForCausalLM, from_hf, to_hf
from sessa.models.lm import SessaLM, supports_cache
from sessa.utils.manifest import write_manifest

TINY = dict(vocab_size=40, d_model=16, n_layers=2, n_heads=2, eos_token_id=None)
CACHED = [name for name, cls in MIXERS.items() if "cache" in cls.accepts]
UNCACHED = [name for name in MIXERS if name not in CACHED]


def model(mixer: str, seed: int = 0, scale: float = 1.0) -> SessaForCausalLM:
    """A fresh model; scale > 1 multiplies every weight, so the past weighs on the scores (a wrong cache or
    mask then changes the generated tokens, which it may not do at the small initial weights)."""
    torch.manual_seed(seed)
    m = SessaForCausalLM(SessaConfig(**TINY, mixer=mixer)).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(scale)
    return m


@torch.no_grad()
def argmax_loop(m: SessaForCausalLM, x: torch.Tensor, n: int) -> torch.Tensor:
    for _ in range(n):
        x = torch.cat([x, m(x, use_cache=False).logits[:, -1:].argmax(-1)], dim=1)
    return x


@pytest.mark.parametrize("mixer", list(MIXERS))
def test_conversion_and_save_load_keep_the_logits(mixer, tmp_path):
    hf = model(mixer)
    x = torch.randint(0, 40, (2, 9))
    with torch.no_grad():
        logits = hf(x, use_cache=False).logits
        core = from_hf(hf)
        assert isinstance(core, SessaLM) and core.config.mixer == mixer
        assert torch.equal(core(x).logits, logits)
        assert torch.equal(to_hf(core)(x, use_cache=False).logits, logits)
        hf.save_pretrained(tmp_path)
        back = AutoModelForCausalLM.from_pretrained(tmp_path)
        assert type(back) is SessaForCausalLM and back.config.mixer == mixer
        assert torch.equal(back(x, use_cache=False).logits, logits)
    assert list(back.state_dict()) == list(hf.state_dict())


@pytest.mark.parametrize("mixer", list(MIXERS))
def test_greedy_generate_equals_the_argmax_loop(mixer):
    hf = model(mixer, seed=1)
    x = torch.randint(0, 40, (2, 5))
    out = hf.generate(x, max_new_tokens=4, do_sample=False)  # cached where the mixer can, else recomputed
    assert torch.equal(out, argmax_loop(hf, x, 4))
    assert hf.model.supports_cache == (mixer in CACHED) == supports_cache(hf.config)


@pytest.mark.parametrize("mixer", CACHED)
def test_cached_generation_with_left_padding(mixer):
    hf = model(mixer, seed=2, scale=3.0)
    x = torch.randint(0, 40, (2, 6))
    assert torch.equal(hf.generate(x, max_new_tokens=4, do_sample=False, use_cache=True), argmax_loop(hf, x, 4))
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, :2] = 0  # row 1 is left-padded
    with torch.no_grad():  # the padded row's prefill and a cached step equal the unpadded row's
        out = hf(x, attention_mask=mask, use_cache=True)
        alone = hf(x[1:, 2:], use_cache=True)
        torch.testing.assert_close(out.logits[1, 2:], alone.logits[0], rtol=1e-4, atol=1e-4)
        nxt = torch.randint(0, 40, (2, 1))
        step = hf(nxt, cache=out.cache, attention_mask=torch.cat([mask, torch.ones(2, 1, dtype=torch.long)], 1))
        torch.testing.assert_close(step.logits[1], hf(nxt[1:], cache=alone.cache).logits[0], rtol=1e-4, atol=1e-4)
    padded = hf.generate(x, attention_mask=mask, max_new_tokens=4, do_sample=False, use_cache=True)
    assert torch.equal(padded[1, 6:], argmax_loop(hf, x[1:, 2:], 4)[0, 4:])


@pytest.mark.parametrize("mixer", CACHED)
def test_beam_search_reorders_the_mixer_cache(mixer):
    hf = model(mixer, seed=3, scale=3.0)
    x = torch.randint(0, 40, (2, 5))
    kw = dict(max_new_tokens=8, do_sample=False, num_beams=4)
    assert torch.equal(hf.generate(x, use_cache=True, **kw), hf.generate(x, use_cache=False, **kw))


@pytest.mark.parametrize("mixer", UNCACHED)
def test_a_cache_the_mixer_cannot_keep_is_refused_by_name(mixer):
    hf = model(mixer)
    x = torch.randint(0, 40, (1, 4))
    assert hf(x).cache is None  # use_cache defaults to False for it
    with pytest.raises(ValueError, match="does not support the arguments \\['cache'\\]"):
        hf(x, use_cache=True)
    with pytest.raises(ValueError, match="cache"):
        hf.generate(x, max_new_tokens=2, use_cache=True)


def test_missing_gated_deltanet_weights_get_their_initial_values(tmp_path):
    hf = model("gated_deltanet")
    hf.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    dropped = [k for k in state if k.endswith(("gdn.A_log", "gdn.dt_bias", "gdn.norm.weight"))]
    assert len(dropped) == 3 * TINY["n_layers"]
    save_file({k: v for k, v in state.items() if k not in dropped}, tmp_path / "model.safetensors",
              metadata={"format": "pt"})
    write_manifest(tmp_path, ["config.json", "generation_config.json", "model.safetensors"])
    loaded, info = SessaForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    assert set(info["missing_keys"]) == set(dropped)
    for layer in loaded.model.layers:
        gdn = layer.mixer.gdn
        assert torch.equal(gdn.dt_bias, torch.ones_like(gdn.dt_bias))
        assert bool(((gdn.A_log.exp() > 0.0099) & (gdn.A_log.exp() < 16.001)).all())
        assert torch.equal(gdn.norm.weight, torch.ones_like(gdn.norm.weight))
    kept = "model.layers.0.mixer.gdn.in_proj_qkvz.weight"
    assert torch.equal(loaded.state_dict()[kept], state[kept])  # loaded weights are not re-initialised
