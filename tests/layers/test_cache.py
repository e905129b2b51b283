"""Per-layer cache: full forward == chunked prefill(s) + token-by-token decode; buffers; validation."""

import pytest
import torch

from sessa import SessaLayer, SessaMixer
from sessa.layers.cache import GrowableBuffer, SessaLayerCache
from sessa.models.cache import SessaCache
from sessa.utils.checks import debug_checks


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def make_layer(D=16, H=1, Hkv=None, rope=True, feedback=True) -> SessaLayer:
    layer = SessaLayer(D, n_heads=H, n_kv_heads=Hkv, rope=rope, feedback=feedback)
    with torch.no_grad():  # input-dependent gamma of both signs, non-trivial biases
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return layer.eval()


def run_split(layer, x, splits):
    """Prefill x[:, :s0], then chunks up to each split point, then decode one token at a time."""
    cache, outs, start = None, [], 0
    for stop in [*splits, *range(splits[-1] + 1, x.shape[1] + 1)]:
        y, cache = layer(x[:, start:stop], cache=cache, use_cache=True)
        outs.append(y)
        start = stop
    return torch.cat(outs, dim=1), cache


@pytest.mark.parametrize("H,Hkv,rope", [(1, None, True), (4, None, True), (4, 2, True), (2, 1, False)])
@pytest.mark.parametrize("splits", [(1,), (5, 13), (8, 9, 18)])
def test_prefill_chunks_then_decode_equals_full_forward(H, Hkv, rope, splits):
    torch.manual_seed(1)
    layer = make_layer(16, H, Hkv, rope)
    x = torch.randn(2, 24, 16)
    with torch.no_grad():
        layer.mixer.impl = "naive"  # the reference: the dense oracle over the whole sequence
        full = layer(x)
        layer.mixer.impl = "auto"  # what users get: chunk / recurrent against the cached past
        inc, cache = run_split(layer, x, list(splits))
    assert inc.shape == full.shape
    assert rel_err(inc, full) <= 1e-5
    assert cache.seq_len == 24 and cache.batch_size == 2
    assert cache.k.shape == (2, 24, Hkv or H, 16 // H) and cache.v.shape == cache.k.shape
    assert cache.k_b.shape == (2, 24, 1, 16) and cache.s.shape == (2, 24, 1, 16)
    assert cache.attention_mask is None and cache.next_positions.tolist() == [24, 24]


@pytest.mark.parametrize("impl", ["chunk", "recurrent"])
def test_chunked_prefill_across_kernel_blocks_with_gradients(impl):
    """Prefill chunks longer than the kernel's block (chunk_size 4) continue the cache; gradients flow."""
    layer = SessaLayer(16, n_heads=2, n_kv_heads=1, impl=impl, chunk_size=4)
    ref = SessaLayer(16, n_heads=2, n_kv_heads=1, impl="naive")
    ref.load_state_dict(layer.state_dict())
    x = torch.randn(2, 23, 16, requires_grad=True)
    want = ref(x)
    want.pow(2).sum().backward()
    g_want, x.grad = x.grad.clone(), None
    y1, cache = layer(x[:, :10], use_cache=True)
    y2, cache = layer(x[:, 10:17], cache=cache)
    y3, cache = layer(x[:, 17:], cache=cache)
    got = torch.cat([y1, y2, y3], 1)
    got.pow(2).sum().backward()
    assert rel_err(got, want) <= 1e-5
    assert rel_err(x.grad, g_want) <= 1e-5


def test_cached_s_and_keys_equal_the_full_pass():
    """The cache holds s of the full solve and RoPE-rotated keys at absolute positions."""
    layer = make_layer(16, 2, 1)
    mixer = layer.mixer
    a = torch.randn(1, 20, 16)
    with torch.no_grad():
        s_full = mixer(a)
        s1, cache = mixer(a[:, :9], use_cache=True)
        s2, cache = mixer(a[:, 9:], cache=cache)
        _, k_full, _ = mixer.forward_qkv(a, torch.arange(20))
    assert rel_err(cache.s[:, :, 0], s_full) <= 1e-5
    assert rel_err(torch.cat([s1, s2], 1), s_full) <= 1e-5
    assert rel_err(cache.k, k_full) <= 1e-6


def test_feedback_off_decode_equals_full():
    layer = make_layer(16, 4, 2, feedback=False)
    x = torch.randn(1, 20, 16)
    with torch.no_grad():
        inc, cache = run_split(layer, x, [7])
        assert rel_err(inc, layer(x)) <= 1e-5
    assert cache.k_b is None and cache.s is None


def test_growable_buffer_doubles_capacity_instead_of_copying_every_token():
    buf = GrowableBuffer(torch.zeros(2, 0, 3))
    capacities = set()
    for t in range(100):
        buf.append(torch.full((2, 1, 3), float(t)))
        capacities.add(buf.data.shape[1])
    assert buf.value.shape == (2, 100, 3)
    assert torch.equal(buf.value[0, :, 0], torch.arange(100.0))
    assert len(capacities) <= 4  # 16, 32, 64, 128: a handful of reallocations for 100 appends


def test_growable_buffer_keeps_autograd_graph():
    buf = GrowableBuffer(torch.zeros(1, 0, 2), dim=1)
    w = torch.ones(1, 3, 2, requires_grad=True)
    buf.append(w * 2)
    buf.append(w[:, :1] * 3)
    buf.value.sum().backward()
    assert torch.equal(w.grad, torch.tensor([[[5.0, 5.0], [2.0, 2.0], [2.0, 2.0]]]))


def test_training_through_the_cache_gives_the_full_gradients():
    layer = make_layer(8, 2, 1).train()
    x = torch.randn(1, 12, 8, requires_grad=True)
    layer(x).pow(2).sum().backward()
    want = x.grad.clone()
    x.grad = None
    y1, cache = layer(x[:, :5], use_cache=True)
    y2, cache = layer(x[:, 5:], cache=cache)
    torch.cat([y1, y2], 1).pow(2).sum().backward()
    assert rel_err(x.grad, want) <= 1e-5


def test_index_select_reorders_rows_for_beam_search():
    layer = make_layer(16, 2)
    x = torch.randn(3, 10, 16)
    nxt = torch.randn(3, 1, 16)
    with torch.no_grad():
        _, cache = layer(x, use_cache=True)
        idx = torch.tensor([2, 0, 2, 1])
        sub = cache.index_select(idx)
        y_sub, _ = layer(nxt[idx], cache=sub)
        y_ref = layer(torch.cat([x, nxt], 1)[idx])[:, -1:]
    assert sub.batch_size == 4 and sub.seq_len == 11
    assert cache.batch_size == 3 and cache.seq_len == 10  # the original is untouched
    assert rel_err(y_sub, y_ref) <= 1e-5
    model_cache = SessaCache(2)
    model_cache.layers[0] = cache
    model_cache.reorder_cache(torch.tensor([1, 1]))
    assert model_cache.batch_size == 2 and model_cache.layers[1] is None
    with pytest.raises(ValueError, match="batch_idx"), debug_checks():  # a value check: debug mode only
        cache.index_select(torch.tensor([3]))
    with pytest.raises(TypeError, match="batch_idx"):
        cache.index_select(torch.tensor([0.0]))


def test_bad_cache_and_mask_are_rejected():
    layer = make_layer(16, 2)
    with torch.no_grad():
        _, cache = layer(torch.randn(2, 5, 16), use_cache=True)
        with pytest.raises(ValueError, match="batch size"):
            layer(torch.randn(3, 1, 16), cache=cache)
        with pytest.raises(TypeError, match="cache"):
            layer(torch.randn(2, 1, 16), cache=SessaCache(1))
        other = SessaMixer(16, 4).init_cache(2, dtype=torch.float32)
        with pytest.raises(ValueError, match="n_kv_heads"):
            layer(torch.randn(2, 1, 16), cache=other)
        with pytest.raises(ValueError, match=r"attention_mask must be \[B, past \+ T\]"):
            layer(torch.randn(2, 1, 16), cache=cache, attention_mask=torch.ones(2, 1, dtype=torch.long))
        with pytest.raises(TypeError, match="attention_mask"):
            layer(torch.randn(2, 1, 16), cache=cache, attention_mask=torch.ones(2, 6))
        with pytest.raises(ValueError, match="only 0"), debug_checks():  # value checks: debug mode only
            layer(torch.randn(2, 1, 16), cache=cache, attention_mask=torch.full((2, 6), 2))
        with pytest.raises(ValueError, match="cached tokens"), debug_checks():  # the past must match the cache
            bad = torch.ones(2, 6, dtype=torch.long)
            bad[0, 0] = 0
            layer(torch.randn(2, 1, 16), cache=cache, attention_mask=bad)
        with pytest.raises(ValueError, match="T >= 1"):
            layer(torch.randn(2, 0, 16), cache=cache)
        with pytest.raises(TypeError, match="use_cache"):
            layer(torch.randn(2, 1, 16), use_cache=1)
        assert cache.seq_len == 5  # failed calls left the cache unchanged
        bad_a = torch.full((2, 1, 16), float("nan"))
        with pytest.raises(ValueError, match="NaN"), debug_checks():  # found inside the solve, after K/V appended
            layer.mixer(bad_a, cache=cache)
        assert cache.seq_len == 5 and cache.k.shape[1] == 5 and cache.s.shape[1] == 5
    with pytest.raises(ValueError, match="n_layers"):
        SessaCache(0)
    assert isinstance(cache, SessaLayerCache)
