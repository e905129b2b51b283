"""TrainConfig validation and YAML/flag loading, the lr schedule, and the resumable batch plan."""

import math

import pytest
import yaml
from train_helpers import TASK, tiny_config

from sessa.commands.common import parse_key_value as parse_override
from sessa.train.config import TrainConfig, apply_overrides
from sessa.train.data import GlobalBatches, accumulation
from sessa.train.optim import lr_factor


@pytest.mark.parametrize(
    "field,value,exc,words",
    [
        ("steps", 0, ValueError, "steps"),
        ("steps", 2.5, TypeError, "steps"),
        ("batch_size", 10, ValueError, "grad_accum"),  # with grad_accum=3 (set below)
        ("lr", -1.0, ValueError, "lr"),
        ("lr", float("nan"), ValueError, "lr"),
        ("min_lr_ratio", 1.5, ValueError, "min_lr_ratio"),
        ("precision", "fp16", ValueError, "precision"),
        ("betas", (0.9, 1.0), ValueError, "betas[1]"),
        ("grad_clip", 0.0, ValueError, "grad_clip"),
        ("progress", "yes", TypeError, "progress"),
        ("stop_at", 99, ValueError, "stop_at"),
        ("task_options", [1], TypeError, "task_options"),
        ("model", {"d_model": 30, "n_heads": 4}, ValueError, "divisible"),
    ],
)
def test_bad_values_name_the_field(field, value, exc, words):
    kw = {field: value}
    if field == "batch_size":
        kw["grad_accum"] = 3
    with pytest.raises(exc, match=words.replace("[", r"\[").replace("]", r"\]")):
        tiny_config(**kw)


def test_unknown_keys_are_errors():
    d = tiny_config().to_dict()
    with pytest.raises(ValueError, match="unknown TrainConfig keys.*'stpes'"):
        TrainConfig.from_dict({**d, "stpes": 3})
    with pytest.raises(ValueError, match="unknown SessaConfig field 'width'"):
        TrainConfig.from_dict({**d, "model": {**d["model"], "width": 3}})


def test_resume_auto_needs_out_dir():
    with pytest.raises(ValueError, match="out_dir"):
        tiny_config(resume=True)


def test_yaml_round_trip_and_overrides(tmp_path):
    cfg = tiny_config(out_dir=str(tmp_path))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    back = TrainConfig.from_yaml(path, allow_task_import=True)
    assert back.to_dict() == cfg.to_dict()
    over = TrainConfig.from_yaml(path, {"model.d_model": 64, "lr": "1e-3", "task": TASK}, allow_task_import=True)
    assert over.model.d_model == 64 and over.lr == 1e-3 and over.model.n_layers == cfg.model.n_layers
    assert parse_override("model.gamma_max=0.99") == ("model.gamma_max", 0.99)
    assert parse_override("lr=3e-4") == ("lr", 3e-4)  # PyYAML alone would read a str
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_override("lr")
    with pytest.raises(ValueError, match="not a mapping"):
        apply_overrides({"lr": 1.0}, {"lr.x": 2})


def test_bad_yaml_names_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("steps: [1,\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        TrainConfig.from_yaml(p)
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        TrainConfig.from_yaml(tmp_path / "nope.yaml")


def test_lr_schedule_warmup_then_cosine_to_floor():
    f = [lr_factor(s, 100, 10, 0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(f[:10], f[1:10], strict=False))  # warmup rises
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))  # cosine falls
    assert lr_factor(100, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(55, 100, 10, 0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))


@pytest.mark.parametrize("world", [1, 2, 4, 8])
def test_global_batch_constant_whatever_the_world_size(world):
    micro, accum = accumulation(32, 4, world)
    assert micro * accum * world == 32
    assert micro <= 32 // 4  # never a bigger forward than on one process
    with pytest.raises(ValueError, match="divisible"):
        accumulation(30, 1, 4)


def test_batch_plan_shards_and_epochs():
    plan = GlobalBatches(n=20, batch_size=8, seed=3)
    assert plan.batches_per_epoch == 2
    e0 = plan.global_batch(0) + plan.global_batch(1)
    e1 = plan.global_batch(2) + plan.global_batch(3)
    assert len(set(e0)) == 16 and len(set(e1)) == 16  # no repeats within an epoch
    assert e0 != e1  # a fresh shuffle each epoch
    assert GlobalBatches(20, 8, 3).global_batch(3) == plan.global_batch(3)  # pure function of (seed, step)
    assert GlobalBatches(20, 8, 4).global_batch(0) != plan.global_batch(0)
    shards = [plan.rank_batch(5, r, 4) for r in range(4)]
    assert sum(shards, []) == plan.global_batch(5)  # ranks partition the global batch
    assert plan.position(5) == {"epoch": 2, "batch_in_epoch": 1, "examples_seen": 40}
    with pytest.raises(ValueError, match="fewer than batch_size"):
        GlobalBatches(4, 8, 0)


def test_random_bad_configs_raise_only_clear_errors():
    """>= 200 random configs with one field set to an arbitrary value: either valid, or ValueError/TypeError
    naming that field (never another exception type, never a silently accepted wrong type)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    base = tiny_config().to_dict()
    fields = sorted(set(base) - {"model"})
    junk = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                     st.text(max_size=5), st.lists(st.integers(), max_size=3),
                     st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))

    @settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(field=st.sampled_from(fields), value=junk)
    def check(field, value):
        try:
            cfg = TrainConfig.from_dict({**base, field: value})
        except (ValueError, TypeError) as e:
            assert field.split("_")[0] in str(e) or field in str(e), (field, value, str(e))
            return
        got = getattr(cfg, field)
        assert got == value or (field == "betas" and list(got) == list(value)) or \
            (isinstance(value, int) and got == float(value)) or \
            (isinstance(value, str) and got == float(value)) or \
            (field == "warmup_steps" and value >= cfg.steps and got == cfg.steps // 10), (field, value, got)

    check()


def test_warmup_longer_than_the_run_is_capped_with_a_warning():
    with pytest.warns(UserWarning, match=r"warmup_steps \(100\) >= steps \(20\).*= 2"):
        cfg = TrainConfig(steps=20)
    assert cfg.warmup_steps == 2
    assert TrainConfig(steps=20, warmup_steps=5).warmup_steps == 5  # below the run length: kept

