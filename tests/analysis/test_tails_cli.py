"""`sessa tails --quick` writes valid JSON and a PNG; with a checkpoint it measures the model too."""

import json
import os

import pytest
import torch

from sessa.cli import main


def _check_outputs(out):
    with open(os.path.join(out, "tails.json"), encoding="utf-8") as f:
        d = json.load(f)
    with open(os.path.join(out, "tails.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    return d


def test_tails_quick(tmp_path, capsys):
    assert main(["tails", "--quick", "--n-boot", "20", "--out", str(tmp_path)]) == 0
    d = _check_outputs(tmp_path)
    c = d["constructions"]
    assert {"sessa_uniform_gamma0.5", "attention_uniform", "ssm_fixed_decay0.99"} <= set(c)
    for name, e in c.items():
        assert e["power"]["ci_low"] <= e["power"]["exponent"] <= e["power"]["ci_high"], name
        assert len(e["profile"]["lags"]) == len(e["profile"]["values"])
    assert abs(c["sessa_uniform_gamma0.5"]["beta_error"]) < 0.05
    assert c["ssm_fixed_decay0.99"]["better"] == "exp"
    assert "wrote" in capsys.readouterr().out
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]  # atomic writes left no temp files


def test_tails_with_checkpoint(tmp_path):
    ckpt = pytest.importorskip("sessa.train.checkpoint")
    from sessa.models import SessaConfig, SessaLM

    model = SessaLM(SessaConfig(vocab_size=16, d_model=8, n_layers=2, max_seq_len=48))
    ckpt.save_model(model, tmp_path / "model")
    out = tmp_path / "out"
    argv = ["tails", "--quick", "--n-boot", "0", "--gammas", "0.5", "--checkpoint", str(tmp_path / "model"),
            "--batch", "1", "--probes", "2", "--out", str(out)]
    assert main(argv) == 0
    d = _check_outputs(out)["checkpoint"]
    assert d["T"] == 48 and d["target"] == 47
    for view in ("row", "column"):
        e = d[f"end_to_end_{view}"]
        assert len(e["profile"]["values"]) == len(e["profile"]["lags"])
        assert torch.isfinite(torch.tensor(e["profile"]["values"])).all()
        assert f"layer0_feedback_{view}" in d and f"layer1_feedback_{view}" in d


@pytest.mark.parametrize("bad", [["--probes", "0"], ["--decay", "1.5"], ["--max-lag", "4"], ["--fit-min", "200"]])
def test_tails_bad_arguments(tmp_path, bad):
    assert main(["tails", "--quick", "--out", str(tmp_path), *bad]) == 2
