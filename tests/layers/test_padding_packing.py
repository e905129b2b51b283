"""Left padding (attention_mask) and packed sequences (cu_seqlens) == each sequence run alone."""

import pytest
import torch

from sessa import SessaLayer
from sessa.models import SessaConfig, SessaLM


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def make_layer(D=16, H=2, Hkv=1, rope=True) -> SessaLayer:
    layer = SessaLayer(D, n_heads=H, n_kv_heads=Hkv, rope=rope)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return layer


def left_pad(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack [L_i, D] sequences into [B, T, D] with zeros on the left, and the [B, T] mask."""
    T = max(s.shape[0] for s in seqs)
    x = torch.zeros(len(seqs), T, *seqs[0].shape[1:], dtype=seqs[0].dtype)
    mask = torch.zeros(len(seqs), T, dtype=torch.long)
    for i, s in enumerate(seqs):
        x[i, T - s.shape[0] :] = s
        mask[i, T - s.shape[0] :] = 1
    return x, mask


@pytest.mark.parametrize("rope", [True, False])
def test_left_padded_batch_equals_each_sequence_alone(rope):
    layer = make_layer(rope=rope).eval()
    seqs = [torch.randn(L, 16) for L in (13, 6, 1)]
    x, mask = left_pad(seqs)
    x[mask == 0] = 1e3 * torch.randn_like(x[mask == 0])  # garbage in padding must not leak
    with torch.no_grad():
        y = layer(x, attention_mask=mask)
        assert torch.isfinite(y).all()  # padded rows too
        for i, s in enumerate(seqs):
            assert rel_err(y[i, -s.shape[0] :], layer(s[None])[0]) <= 1e-5


def test_left_padded_prefill_then_decode_equals_each_alone():
    layer = make_layer(H=4, Hkv=2).eval()
    seqs = [torch.randn(L, 16) for L in (9, 4)]
    nxt = torch.randn(2, 5, 16)
    x, mask = left_pad(seqs)
    with torch.no_grad():
        y, cache = layer(x, attention_mask=mask, use_cache=True)
        assert cache.next_positions.tolist() == [9, 4]
        outs = []
        for t in range(5):  # the mask may be passed (HF style) or left to the cache
            m = torch.cat([mask, torch.ones(2, t + 1, dtype=torch.long)], 1) if t % 2 else None
            y_t, cache = layer(nxt[:, t : t + 1], cache=cache, attention_mask=m)
            outs.append(y_t)
        dec = torch.cat(outs, 1)
        assert cache.attention_mask.shape == (2, 14)
        for i, s in enumerate(seqs):
            assert rel_err(dec[i], layer(torch.cat([s, nxt[i]])[None])[0, -5:]) <= 1e-5


def test_all_ones_mask_equals_no_mask():
    layer = make_layer().eval()
    x = torch.randn(2, 10, 16)
    with torch.no_grad():  # the mask is applied as given (no host read to spot that it is all ones)
        assert rel_err(layer(x, attention_mask=torch.ones(2, 10, dtype=torch.bool)), layer(x)) <= 1e-6


def test_lm_left_padding_logits_and_loss_masking():
    model = SessaLM(SessaConfig(vocab_size=40, d_model=16, n_layers=2, n_heads=2)).eval()
    seqs = [torch.randint(0, 40, (L,)) for L in (11, 3)]
    ids = torch.zeros(2, 11, dtype=torch.long)
    ids[1, 8:] = seqs[1]
    ids[0] = seqs[0]
    mask = (torch.arange(11) >= torch.tensor([[0], [8]])).long()
    with torch.no_grad():
        logits = model(ids, attention_mask=mask).logits
        for i, s in enumerate(seqs):
            assert rel_err(logits[i, 11 - len(s) :], model(s[None]).logits[0]) <= 1e-5


def assert_grads_close(want: dict, model: torch.nn.Module) -> None:
    """Each parameter gradient within 1e-5 of the largest gradient entry (some are exactly 0 in theory,
    e.g. the key bias without RoPE: softmax ignores a constant logit shift)."""
    scale = max(g.abs().max().item() for g in want.values())
    for n, p in model.named_parameters():
        assert (want[n] - p.grad).abs().max().item() <= 1e-5 * scale, n


def packed(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([s.shape[0] for s in seqs])
    cu = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    return torch.cat(seqs, 0)[None], cu


@pytest.mark.parametrize("H,Hkv,rope", [(1, None, True), (4, 2, True), (2, 2, False)])
def test_packed_layer_equals_separate_runs_outputs_and_gradients(H, Hkv, rope):
    layer = make_layer(16, H, Hkv, rope)
    seqs = [torch.randn(L, 16) for L in (7, 1, 12, 0, 5)]  # an empty segment is allowed
    x, cu = packed(seqs)
    x.requires_grad_(True)
    w = torch.randn_like(x)
    y = layer(x, cu_seqlens=cu)
    (y * w).sum().backward()
    g_packed = {n: p.grad.clone() for n, p in layer.named_parameters()}
    layer.zero_grad()
    parts, start = [], 0
    xs = x.detach().clone().requires_grad_(True)
    for s in seqs:
        if len(s):
            part = layer(xs[:, start : start + len(s)])
            (part * w[:, start : start + len(s)]).sum().backward()
            parts.append(part)
        start += len(s)
    assert rel_err(y, torch.cat(parts, 1)) <= 1e-5
    assert rel_err(x.grad, xs.grad) <= 1e-5
    assert_grads_close(g_packed, layer)


def test_packed_lm_equals_separate_runs():
    model = SessaLM(SessaConfig(vocab_size=40, d_model=16, n_layers=2, n_heads=2))
    seqs = [torch.randint(0, 40, (L,)) for L in (6, 9, 4)]
    ids, cu = packed(seqs)
    out = model(ids, cu_seqlens=cu)
    out.logits.square().mean().backward()
    g_packed = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    sep = torch.cat([model(s[None]).logits for s in seqs], 1)
    sep.square().mean().backward()
    assert rel_err(out.logits, sep) <= 1e-5
    assert_grads_close(g_packed, model)


def test_packing_and_padding_validation():
    layer = make_layer()
    x = torch.randn(1, 10, 16)
    cu = torch.tensor([0, 4, 10])
    with pytest.raises(ValueError, match="B = 1"):
        layer(torch.randn(2, 10, 16), cu_seqlens=cu)
    with pytest.raises(ValueError, match="cu_seqlens must start at 0 and end"):
        layer(x, cu_seqlens=torch.tensor([0, 4, 9]))
    with pytest.raises(ValueError, match="non-decreasing"):
        layer(x, cu_seqlens=torch.tensor([0, 6, 4, 10]))
    with pytest.raises(TypeError, match="cu_seqlens"):
        layer(x, cu_seqlens=torch.tensor([0.0, 10.0]))
    with pytest.raises(ValueError, match="cannot be combined"):
        layer(x, cu_seqlens=cu, use_cache=True)
    with pytest.raises(ValueError, match="cannot be combined"):
        layer(x, cu_seqlens=cu, attention_mask=torch.ones(1, 10))
    with pytest.raises(ValueError, match=r"\[B, past \+ T\]"):
        layer(x, attention_mask=torch.ones(1, 9, dtype=torch.long))
