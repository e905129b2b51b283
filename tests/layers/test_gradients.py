"""Every parameter gets a gradient tensor, never None, even at T = 1 where the feedback branch reads nothing.

An optimizer skips a parameter whose .grad is None (no weight decay, no moment update) and DDP waits for
it, so the feedback parameters must get exact zeros there, as the dense solve gives.
"""

import pytest
import torch

from sessa.layers.sessa import SessaLayer
from sessa.ops import feedback_solve


@pytest.mark.parametrize("impl", ["auto", "recurrent", "chunk", "naive"])
@pytest.mark.parametrize("T", [1, 2, 5])
def test_every_parameter_has_a_gradient(impl, T):
    layer = SessaLayer(8, 2, 1, impl=impl, chunk_size=2).double()
    layer(torch.randn(2, T, 8, dtype=torch.float64)).pow(2).sum().backward()
    missing = [n for n, p in layer.named_parameters() if p.grad is None]
    assert missing == []
    if T == 1:  # row 0 reads no past: the feedback parameters cannot move the output
        for p in (layer.mixer.fb_proj.weight, layer.mixer.gamma_proj.weight, layer.mixer.gamma_bias):
            assert torch.count_nonzero(p.grad) == 0
        assert torch.count_nonzero(layer.mixer.q_proj.weight.grad) > 0


@pytest.mark.parametrize("impl", ["auto", "recurrent", "chunk", "naive"])
@pytest.mark.parametrize("past", [0, 3])
def test_solve_inputs_get_gradients_at_t1(impl, past):
    q, k, f = (torch.randn(2, 1, 2, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    gamma = (0.9 * torch.rand(2, 1, 2, dtype=torch.float64)).requires_grad_(True)
    state = None
    if past:
        state = tuple(torch.randn(2, past, 2, 4, dtype=torch.float64, requires_grad=True) for _ in range(2))
    s = feedback_solve(q, k, f, gamma, impl=impl, initial_state=state)
    ref = feedback_solve(q, k, f, gamma, impl="naive", initial_state=state)
    torch.testing.assert_close(s, ref, rtol=1e-12, atol=1e-12)
    inputs = (q, k, f, gamma, *(state or ()))
    grads = torch.autograd.grad(s.pow(2).sum(), inputs, allow_unused=True)
    want = torch.autograd.grad(ref.pow(2).sum(), inputs, allow_unused=True)
    assert all(g is not None for g in grads)
    for g, w in zip(grads, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
    assert torch.count_nonzero(grads[1]) == 0  # the newest key is read by no row
    if not past:
        assert torch.count_nonzero(grads[0]) == 0 and torch.count_nonzero(grads[3]) == 0
