"""The training path never reads a tensor on the host (no device sync) and compiles as one graph.

A host read (`.item()`, `bool(t)`, `int(t)`, `.tolist()`, `torch.equal`) stalls the CPU on a GPU and is a
graph break under torch.compile; value checks therefore run only in debug mode (sessa.utils.checks).
"""

import contextlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from sessa.models.config import SessaConfig as CoreConfig
from sessa.models.hf import SessaConfig as HFConfig
from sessa.models.hf import SessaForCausalLM
from sessa.models.lm import SessaLM
from sessa.utils.checks import debug_checks

V, T = 32, 20  # T > 8 with chunk_size 8: the chunked solve with several blocks (the training path)
ARCH = dict(vocab_size=V, d_model=16, n_layers=2, n_heads=2, chunk_size=8)
aten = torch.ops.aten
HOST_READS = {aten._local_scalar_dense.default, aten.is_nonzero.default, aten.equal.default}


class _RefuseHostReads(TorchDispatchMode):
    """Raise on every op that copies a tensor value to the host (what .item() / bool() / int() dispatch to)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in HOST_READS:
            raise AssertionError(f"host read {func} in the training path")
        return func(*args, **(kwargs or {}))


def _refuse(*_args, **_kwargs):
    raise AssertionError("host read in the training path")


@contextlib.contextmanager
def no_host_reads(monkeypatch: pytest.MonkeyPatch):
    """Both layers of defence: the dispatcher ops, and the Python methods (tolist reads memory directly)."""
    with monkeypatch.context() as m:
        for name in ("item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__"):
            m.setattr(torch.Tensor, name, _refuse)
        with _RefuseHostReads():
            yield


def build(kind: str, n_layers: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    arch = {**ARCH, "n_layers": n_layers}
    if kind == "core":
        return SessaLM(CoreConfig(**arch))
    return SessaForCausalLM(HFConfig(**arch)).train()


def loss_of(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    kwargs = {} if mask is None else {"attention_mask": mask}
    return model(input_ids=ids, labels=ids, **kwargs).loss


def test_the_guard_catches_host_reads(monkeypatch):
    x = torch.ones(3)
    for read in (lambda: x.sum().item(), lambda: bool(x.all()), lambda: x.tolist(), lambda: int(x[0]),
                 lambda: torch.equal(x, x)):
        with pytest.raises(AssertionError, match="host read"), no_host_reads(monkeypatch):
            read()
    with pytest.raises(AssertionError, match="host read"), no_host_reads(monkeypatch), debug_checks():
        loss_of(build("core"), torch.randint(0, V, (2, T)))  # debug mode does read values


@pytest.mark.parametrize("kind", ["core", "hf"])
def test_forward_and_backward_read_nothing_on_the_host(kind, monkeypatch):
    model = build(kind)
    ids = torch.randint(0, V, (2, T))
    with no_host_reads(monkeypatch):
        loss = loss_of(model, ids)
        loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())


def test_padded_batch_reads_nothing_on_the_host(monkeypatch):
    model = build("core")
    ids = torch.randint(0, V, (2, T))
    mask = torch.ones(2, T, dtype=torch.long)
    mask[1, :7] = 0  # left padding: the masked paths of both branches
    with no_host_reads(monkeypatch):
        model(ids, labels=ids, attention_mask=mask).loss.backward()


def _compiled_matches_eager(kind: str, backend: str, n_layers: int = 2) -> None:
    model = build(kind, n_layers)
    ids = torch.randint(0, V, (2, T))
    loss = loss_of(model, ids)
    loss.backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    compiled = torch.compile(model, fullgraph=True, backend=backend)  # fullgraph: a graph break is an error
    loss_c = loss_of(compiled, ids)
    loss_c.backward()
    torch.testing.assert_close(loss_c, loss, rtol=1e-5, atol=1e-6)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, want[n], rtol=1e-4, atol=1e-6, msg=n)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["core", "hf"])
def test_fullgraph_compile_forward_backward_matches_eager(kind):
    """AOTAutograd traces forward and backward into single graphs (the compile check without codegen)."""
    torch._dynamo.reset()
    _compiled_matches_eager(kind, "aot_eager")


@pytest.mark.slow
def test_fullgraph_compile_with_inductor_matches_eager():
    """The default backend (generated C++ kernels) on the Hugging Face model, which runs the core inside."""
    torch._dynamo.reset()
    _compiled_matches_eager("hf", "inductor", n_layers=1)  # one layer: code generation is the slow part
