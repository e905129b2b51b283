"""`sessa bench`'s run settings and test evaluation: a TrainConfig view of the budget, and the one evaluate
(the same numbers as `sessa eval`) with accuracy bins on top."""

import math

import pytest
import torch

from sessa.compare.loop import bench_config, budget_dict, evaluate_binned
from sessa.models import SessaConfig, SessaLM
from sessa.tasks import build_task
from sessa.train.config import TrainConfig
from sessa.train.evaluate import MAX_LOG_PERPLEXITY, evaluate, perplexity

MODEL = SessaConfig(vocab_size=128, d_model=16, n_layers=1)


@pytest.fixture(scope="module")
def task():
    return build_task("diffuse_mqar", n_train=40, n_validation=20, n_test=20)


def test_budget_is_a_train_config(task):
    cfg = bench_config({"steps": 7, "lr": 1e-2, "eval_batches": None, "eval_batch_size": 5}, MODEL, task, 3)
    assert isinstance(cfg, TrainConfig) and cfg.seed == 3 and cfg.model is MODEL and cfg.task == task.name
    assert cfg.out_dir is None and cfg.progress is False and cfg.eval_batch_size == 5
    budget = budget_dict(cfg)
    assert budget["steps"] == 7 and budget["batch_size"] == TrainConfig().batch_size  # defaults filled in
    assert "seed" not in budget and "model" not in budget
    assert bench_config(budget, MODEL, task, 3) == cfg  # the budget round-trips
    with pytest.raises(ValueError, match="'stpes'"):  # TrainConfig's own check names the key
        bench_config({"stpes": 3}, MODEL, task, 0)
    with pytest.raises(ValueError, match="eval_batch_size"):
        bench_config({"eval_batch_size": 0}, MODEL, task, 0)
    with pytest.raises(ValueError, match=r"\['seed'\] are set by sessa bench"):
        bench_config({"seed": 1}, MODEL, task, 0)


def test_binned_evaluation_is_the_one_evaluate_plus_bins(task):
    model = SessaLM(MODEL).eval()
    cfg = bench_config({"eval_batches": 2, "eval_batch_size": 6}, MODEL, task, 0)
    out = evaluate_binned(model, task, "test", cfg)
    plain = evaluate(model, task, "test", 2, batch_size=6, metric_names=("loss", "perplexity", "accuracy", "top5"))
    for name in ("loss", "perplexity", "accuracy", "top5"):
        assert out[name] == plain[name], name
    assert out["scored_tokens"] == plain["tokens"] and out["examples"] == 12
    assert sum(out["by_length"]["count"]) == out["scored_tokens"]
    assert sum(out["by_lag"]["count"]) == out["scored_tokens"]  # every scored answer token has a lag
    hits = sum(a * c for a, c in zip(out["by_length"]["accuracy"], out["by_length"]["count"], strict=True))
    assert hits == pytest.approx(out["accuracy"] * out["scored_tokens"])


def test_perplexity_definition():
    assert perplexity(math.log(7.0)) == pytest.approx(7.0)
    assert perplexity(1e6) == math.exp(MAX_LOG_PERPLEXITY)  # clamped: no overflow for a diverged model
    assert math.isfinite(perplexity(float(torch.finfo(torch.float64).max)))
