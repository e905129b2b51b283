"""Parameter matching of the baselines against the Sessa model."""

import functools

import pytest

from sessa.compare.matching import count_parameters, match_baseline
from sessa.compare.presets import get_preset
from sessa.layers.mixers import MIXERS
from sessa.models import SessaConfig, SessaLM

BASE = SessaConfig(vocab_size=46, d_model=64, n_layers=2)
BASELINES = [name for name in MIXERS if name != "sessa"]


def test_count_parameters_equals_built_model():
    for cfg in (BASE, SessaConfig(vocab_size=46, d_model=48, n_layers=1, mixer="mamba2")):
        assert count_parameters(cfg) == SessaLM(cfg).num_parameters()


@pytest.mark.parametrize("mixer", BASELINES)
@pytest.mark.parametrize("base", [BASE, SessaConfig(vocab_size=300, d_model=128, n_layers=3, n_heads=4)])
def test_match_within_tolerance_and_reported(mixer, base):
    cfg, report = match_baseline(base, mixer)
    target = SessaLM(base).num_parameters()
    actual = SessaLM(cfg).num_parameters()  # the report must describe the real model
    assert report["target_params"] == target and report["params"] == actual
    assert abs(actual / target - 1) <= 0.03
    assert report["rel_diff"] == pytest.approx(actual / target - 1)
    assert cfg.mixer == mixer and cfg.n_layers == base.n_layers and cfg.vocab_size == base.vocab_size
    assert cfg.n_heads == base.n_heads


@functools.cache
def laptop_vocab_size(task: str) -> int:
    from sessa.tasks import build_task

    return build_task(task, **get_preset("laptop")["tasks"][task]).vocab_size


@pytest.mark.parametrize("mixer", ["gated_deltanet", "llama"])
@pytest.mark.parametrize("task", ["symbolsoup", "diffuse_mqar", "mqar", "passkey", "lm"])
def test_new_baselines_match_the_laptop_preset_within_one_percent(mixer, task):
    """Their fine option (value head width, SwiGLU width) brings every laptop task within 1 %."""
    preset = get_preset("laptop")
    base = SessaConfig(**{**preset["model"], "vocab_size": laptop_vocab_size(task)})
    cfg, report = match_baseline(base, mixer, tolerance=0.01, mixer_options=preset.get("mixer_options", {}).get(mixer))
    assert abs(SessaLM(cfg).num_parameters() / SessaLM(base).num_parameters() - 1) <= 0.01
    assert report["mixer_options"] == cfg.mixer_options and cfg.n_layers == base.n_layers


def test_tolerance_too_tight_raises_naming_it():
    with pytest.raises(ValueError, match="tolerance"):
        match_baseline(SessaConfig(vocab_size=10, d_model=8, n_layers=1), "attention", tolerance=1e-6)


def test_matching_sessa_to_itself_keeps_the_width():
    cfg, report = match_baseline(BASE, "sessa")
    assert cfg == BASE and report["rel_diff"] == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="mixer must be one of"):
        match_baseline(BASE, "gpt")
    with pytest.raises(ValueError, match=r"mixer_options\['bogus'\]"):
        match_baseline(BASE, "mamba2", mixer_options={"bogus": 1})
    with pytest.raises(ValueError, match="tolerance"):
        match_baseline(BASE, "attention", tolerance=2.0)
    with pytest.raises(TypeError, match="config"):
        match_baseline({"d_model": 64}, "attention")
