"""Sizing: a config's parameter count without building it, and refusal before allocating."""

import time

import pytest
import torch

from sessa.models import SessaConfig, SessaLM
from sessa.models.hf import SessaConfig as HFSessaConfig
from sessa.models.hf import SessaForCausalLM
from sessa.models.size import MAX_BYTES_ENV, model_size


@pytest.mark.parametrize("kw", [dict(), dict(n_heads=4, n_kv_heads=2), dict(tie_embeddings=False),
                                dict(mixer="attention"), dict(mixer="mamba2"), dict(mixer="gated_deltanet"),
                                dict(mixer="llama"), dict(mixer="llama", tie_embeddings=False)])
def test_model_size_counts_like_the_real_model(kw):
    cfg = SessaConfig(vocab_size=50, d_model=32, n_layers=3, **kw)
    params, nbytes = model_size(cfg)
    assert params == SessaLM(cfg).num_parameters() and nbytes == 4 * params


@pytest.mark.parametrize("kw, field", [(dict(vocab_size=10**12, d_model=8), "vocab_size=1000000000000"),
                                       (dict(d_model=2**20, n_layers=2), "d_model=1048576"),
                                       (dict(d_model=4096, n_layers=4096), "n_layers=4096")])
def test_too_big_is_refused_at_once(kw, field):
    t = time.perf_counter()
    cfg = SessaConfig(**kw)
    with pytest.raises(ValueError, match=f"GiB of memory available.*{field}"):
        SessaLM(cfg)
    with pytest.raises(ValueError, match="memory available"):
        SessaForCausalLM(HFSessaConfig(**kw))
    assert time.perf_counter() - t < 30


def test_layer_count_has_a_documented_limit():
    with pytest.raises(ValueError, match="n_layers must be"):
        SessaConfig(n_layers=10**6, d_model=8)


def test_limit_override_and_meta_device(monkeypatch):
    cfg = SessaConfig(vocab_size=64, d_model=16, n_layers=1)
    monkeypatch.setenv(MAX_BYTES_ENV, "1000")
    with pytest.raises(ValueError, match="memory available"):
        SessaLM(cfg)
    with torch.device("meta"):  # nothing is allocated there: `sessa info` shows any size
        assert SessaLM(cfg).num_parameters() == model_size(cfg)[0]
    monkeypatch.setenv(MAX_BYTES_ENV, "lots")
    with pytest.raises(ValueError, match=MAX_BYTES_ENV):
        SessaLM(cfg)
