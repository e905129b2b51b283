"""SessaLM: shapes, loss, tied head, overfitting a fixed batch, validation."""

import time

import pytest
import torch

from sessa import SessaConfig, SessaLM
from sessa.models.lm import lm_loss
from sessa.utils import IGNORE_INDEX
from sessa.utils.checks import debug_checks


def tiny(**kw):
    base = dict(vocab_size=32, d_model=32, n_layers=2, n_heads=2, max_seq_len=64)
    base.update(kw)
    return SessaConfig(**base)


def test_forward_shapes_and_loss():
    model = SessaLM(tiny())
    ids = torch.randint(0, 32, (3, 11))
    out = model(ids, labels=ids)
    assert out.logits.shape == (3, 11, 32)
    manual = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, 32), ids[:, 1:].reshape(-1))
    assert torch.allclose(out.loss, manual)
    assert model(ids).loss is None


def test_ignore_index_and_tied_head():
    model = SessaLM(tiny())
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert SessaLM(tiny(tie_embeddings=False)).lm_head.weight is not None
    ids = torch.randint(0, 32, (2, 8))
    labels = torch.full_like(ids, -100)
    labels[:, -1] = ids[:, -1]
    out = model(ids, labels=labels)
    manual = torch.nn.functional.cross_entropy(out.logits[:, -2], ids[:, -1])
    assert torch.allclose(out.loss, manual)


def test_lm_loss_mean_sum_and_nothing_scored():
    logits = torch.randn(3, 7, 11, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 11, (3, 7))
    labels[0, 2:5] = IGNORE_INDEX
    n = int((labels[:, 1:] != IGNORE_INDEX).sum())
    ref = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 11).float(), labels[:, 1:].reshape(-1),
                                            ignore_index=IGNORE_INDEX, reduction="sum")
    torch.testing.assert_close(lm_loss(logits, labels, reduction="sum"), ref)
    torch.testing.assert_close(lm_loss(logits, labels), ref / n)
    assert lm_loss(logits, labels).dtype == torch.float32  # computed in float32 whatever the logits' dtype
    # nothing to score: the loss is 0 (not NaN) and the gradient is zero
    none = torch.full_like(labels, IGNORE_INDEX)
    loss = lm_loss(logits, none)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits.grad))
    with pytest.raises(ValueError, match="reduction"):
        lm_loss(logits, labels, reduction="none")


def test_state_dict_uses_the_hugging_face_layout():
    """model.embed_tokens / model.layers.N / model.norm / lm_head, as transformers' decoder models."""
    keys = set(SessaLM(tiny(tie_embeddings=False)).state_dict())
    assert {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
            "model.layers.1.mixer.q_proj.weight"} <= keys
    assert all(k.startswith(("model.embed_tokens.", "model.layers.", "model.norm.", "lm_head.")) for k in keys)


def test_tiny_lm_overfits_a_fixed_batch():
    torch.manual_seed(0)
    model = SessaLM(tiny())
    ids = torch.randint(0, 32, (4, 24))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    start = time.perf_counter()
    first = None
    for _ in range(120):
        loss = model(ids, labels=ids).loss
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    elapsed = time.perf_counter() - start
    assert first > 3.0  # ~ln(32) at initialisation
    assert loss.item() < 0.2, f"loss {loss.item():.3f} after 120 steps ({elapsed:.1f}s)"


def test_feedback_ablation_and_param_count():
    with_fb = SessaLM(tiny())
    without = SessaLM(tiny(feedback=False))
    assert with_fb.num_parameters() == without.num_parameters()  # same weights, branch unused
    assert with_fb.num_parameters(exclude_embeddings=True) == with_fb.num_parameters() - 32 * 32


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(vocab_size=0), ValueError, "vocab_size"),
        (dict(n_layers=0), ValueError, "n_layers"),
        (dict(d_model=30, n_heads=4), ValueError, "divisible"),
        (dict(gamma_max=1.5), ValueError, "gamma_max"),
        (dict(impl="cuda"), ValueError, "impl"),
        (dict(mixer=3), TypeError, "mixer"),
        (dict(feedback=1), TypeError, "feedback"),
        (dict(max_seq_len=-1), ValueError, "max_seq_len"),
    ],
)
def test_bad_config(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        tiny(**kwargs)


def test_unknown_mixer_and_config_dict_round_trip():
    with pytest.raises(ValueError, match="mixer must be one of"):
        SessaLM(tiny(mixer="lstm"))
    cfg = tiny()
    assert SessaConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown SessaConfig field 'n_layer' \\(did you mean 'n_layers'\\?\\)"):
        SessaConfig.from_dict({**cfg.to_dict(), "n_layer": 3})


@pytest.mark.parametrize(
    "ids,exc,match",
    [
        (torch.tensor([[1, 2, 32]]), ValueError, r"\[0, vocab_size = 32\)"),
        (torch.tensor([[-1, 2]]), ValueError, "input_ids must lie"),
        (torch.tensor([1, 2, 3]), ValueError, "2 dimensions"),
        (torch.tensor([[1.0, 2.0]]), TypeError, "integer"),
        (torch.zeros(0, 4, dtype=torch.long), ValueError, "empty batch"),
    ],
)
def test_bad_token_ids(ids, exc, match):
    with pytest.raises(exc, match=match), debug_checks():  # the id range is a value check: debug mode only
        SessaLM(tiny())(ids)


def test_bad_labels():
    model = SessaLM(tiny())
    ids = torch.randint(0, 32, (2, 5))
    with pytest.raises(ValueError, match="labels must have the shape"):
        model(ids, labels=ids[:, :4])
    with pytest.raises(ValueError, match="labels must lie"), debug_checks():
        model(ids, labels=ids + 100)


@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.int16, torch.int32])
def test_small_integer_ids_are_cast_to_int64(dtype):
    model = SessaLM(tiny())
    ids = torch.randint(0, 32, (2, 6))
    want = model(ids, labels=ids)
    got = model(ids.to(dtype), labels=ids.to(dtype))
    assert torch.equal(got.logits, want.logits) and torch.equal(got.loss, want.loss)
