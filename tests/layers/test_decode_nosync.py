"""The per-token decode step of a Sessa layer never waits for the device and does not re-allocate per token.

On CUDA with Triton installed the step is the Triton decoding kernel (impl="auto"). Value checks (NaN/Inf
and the like) run only in debug mode (`sessa.utils.checks.debug_checks`), so by default nothing in the step
reads a tensor value back.
"""

import contextlib
import os

import pytest
import torch

from sessa.layers.sessa import SessaLayer
from sessa.utils.checks import debug_checks, debug_checks_enabled

D, H = 64, 4


@contextlib.contextmanager
def finite_checks_off():
    assert not debug_checks_enabled()  # the default: no value checks, no host reads
    yield


def prefilled(device: str, dtype: torch.dtype, n_ctx: int = 40, impl: str = "auto"):
    """A SessaLayer and its cache after a prefill of n_ctx tokens (batch 2)."""
    torch.manual_seed(0)
    layer = SessaLayer(D, H, impl=impl).to(device=device, dtype=dtype).eval()
    with torch.no_grad():
        _, cache = layer(torch.randn(2, n_ctx, D, device=device, dtype=dtype), use_cache=True)
    return layer, cache


def _forbid(*_args, **_kwargs):
    raise AssertionError("the decode step read a tensor value back to the host")


@pytest.mark.parametrize("impl", ["auto", "triton"])
def test_decode_step_reads_no_tensor_value_back(monkeypatch, impl):
    """auto is the token-loop step on CPU; triton runs its decoding kernels in Triton's CPU interpreter."""
    if impl == "triton":
        pytest.importorskip("triton", reason="needs the optional triton package")
        if os.environ.get("TRITON_INTERPRET") != "1":
            pytest.skip("the Triton kernels run on CPU only in the interpreter (TRITON_INTERPRET=1)")
    layer, cache = prefilled("cpu", torch.float32, impl=impl)
    _, ref_cache = prefilled("cpu", torch.float32, impl=impl)
    _, spare = prefilled("cpu", torch.float32, impl=impl)
    x = torch.randn(2, 1, D)
    with torch.no_grad():
        with finite_checks_off():
            ref, _ = layer(x, cache=ref_cache)  # the same step, unpatched
        for name in ("item", "tolist", "__bool__", "__int__", "__float__", "__index__"):
            monkeypatch.setattr(torch.Tensor, name, _forbid)
        with pytest.raises(AssertionError, match="read a tensor value back"), debug_checks():
            layer(x, cache=spare)  # the patch is effective: debug mode's value checks are caught
        with finite_checks_off():
            y, _ = layer(x, cache=cache)
            for _ in range(3):
                y2, _ = layer(x, cache=cache)
        monkeypatch.undo()
    assert torch.equal(y, ref) and y2.shape == (2, 1, D) and cache.seq_len == 44


def test_decode_appends_amortised_no_per_token_reallocation():
    layer, cache = prefilled("cpu", torch.float32, n_ctx=5)
    x = torch.randn(2, 1, D)
    buffers = cache._buffers()
    seen = {name: set() for name in buffers}
    with torch.no_grad(), finite_checks_off():
        for _ in range(100):
            layer(x, cache=cache)
            for name, buf in cache._buffers().items():
                seen[name].add(buf.data.data_ptr())
    # capacity doubling: 5 -> 105 tokens is at most ~5 re-allocations per buffer, not 100
    assert all(len(ptrs) <= 6 for ptrs in seen.values()), {n: len(p) for n, p in seen.items()}
    assert cache.seq_len == 105


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: synchronisation is only defined there")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_decode_step_never_synchronises(dtype):
    layer, cache = prefilled("cuda", dtype, n_ctx=300)
    x = torch.randn(2, 1, D, device="cuda", dtype=dtype)
    with torch.no_grad(), finite_checks_off():
        layer(x, cache=cache)  # warm-up (kernel selection, allocator pools)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for _ in range(8):
                y, cache = layer(x, cache=cache)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert y.shape == (2, 1, D) and bool(torch.isfinite(y).all())
