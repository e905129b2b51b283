"""The 2-step recipe for a baseline: a mixer class plus one entry in sessa.layers.mixers.MIXERS, and the LM,
the Hugging Face classes, parameter matching, presets and `sessa bench` all pick it up."""

import json
from typing import Any, ClassVar

import pytest
import torch
import yaml

from sessa.cli import main
from sessa.compare.matching import match_baseline
from sessa.compare.presets import model_names
from sessa.layers.mixers import MIXERS
from sessa.models import SessaConfig, SessaLM


class ToyMixer(torch.nn.Module):
    """s_t = scale * W (mean of a_1..a_t): a causal one-Linear baseline."""

    accepts: ClassVar[frozenset[str]] = frozenset()
    options: ClassVar[dict[str, Any]] = {"scale": 1.0}
    match_option: ClassVar[str | None] = None

    def __init__(self, d_model: int, scale: float = 1.0) -> None:
        super().__init__()
        self.proj, self.scale = torch.nn.Linear(d_model, d_model), scale

    @classmethod
    def from_config(cls, config) -> "ToyMixer":
        return cls(config.d_model, **config.mixer_options)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        count = torch.arange(1, a.shape[1] + 1, dtype=a.dtype, device=a.device)[:, None]
        return self.scale * self.proj(a.cumsum(1) / count)


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(MIXERS, "toy", ToyMixer)


def test_lm_hf_and_matching_pick_up_a_new_mixer(toy):
    cfg = SessaConfig(vocab_size=20, d_model=24, n_layers=2, mixer="toy", mixer_options={"scale": 0.5})
    lm = SessaLM(cfg)
    assert all(isinstance(layer.mixer, ToyMixer) and layer.mixer.scale == 0.5 for layer in lm.model.layers)
    ids = torch.randint(0, 20, (2, 7))
    assert torch.isfinite(lm(ids, labels=ids).loss)
    with pytest.raises(ValueError, match="does not support"):  # no cache: decoding is refused by name
        lm(ids, use_cache=True)
    with pytest.raises(ValueError, match=r"mixer_options\['sacle'\].*did you mean 'scale'"):
        SessaConfig(mixer="toy", mixer_options={"sacle": 2.0})

    from sessa.models.hf import SessaForCausalLM, from_hf, to_hf

    hf = to_hf(lm.eval())
    assert isinstance(hf, SessaForCausalLM) and not hf.model.supports_cache
    assert torch.equal(hf(ids).logits, lm(ids).logits)
    assert torch.equal(from_hf(hf)(ids).logits, lm(ids).logits)
    assert hf.generate(ids, max_new_tokens=2, do_sample=False).shape == (2, 9)  # no cache: full recompute

    matched, report = match_baseline(SessaConfig(vocab_size=20, d_model=32, n_layers=2), "toy", tolerance=0.05)
    assert matched.mixer == "toy" and abs(report["rel_diff"]) <= 0.05
    assert "toy" in model_names()


def test_sessa_bench_runs_a_new_mixer(toy, tmp_path, capsys):
    preset = {
        "model": {"d_model": 24, "n_layers": 1, "n_heads": 1, "impl": "naive"},
        "budget": {"steps": 3, "batch_size": 4, "lr": 1e-2, "warmup_steps": 0, "eval_batches": 1,
                   "eval_batch_size": 8},
        "tasks": {"symbolsoup": {"min_len": 40, "max_len": 60, "n_train": 40, "n_validation": 20, "n_test": 20}},
        "mixer_options": {"toy": {"scale": 0.5}},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(preset))
    rc = main(["bench", "symbolsoup", "--preset", str(path), "--models", "sessa,toy", "--jobs", "1",
               "--threads", "1", "--tolerance", "0.1", "--out", str(tmp_path / "out")])
    assert rc == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    toy_run = results["models"]["toy"]
    assert toy_run["config"]["mixer"] == "toy" and toy_run["config"]["mixer_options"] == {"scale": 0.5}
    assert abs(toy_run["params"] / results["models"]["sessa"]["params"] - 1) <= 0.1
    assert toy_run["runs"][0]["steps_done"] == 3 and 0.0 <= toy_run["summary"]["accuracy"]["mean"] <= 1.0
    assert "| toy |" in capsys.readouterr().out
