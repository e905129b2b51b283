"""Shared test set-up: deterministic seeds, one torch thread, helpers in tests/ importable."""

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))

# Without a GPU the Triton kernel tests run on CPU in Triton's interpreter, which must be switched on
# before triton is first imported (torch._dynamo imports it), i.e. here, before any test module loads.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _one_thread():
    """Test tensors are tiny: one thread is several times faster than two on the 2-core CI machine
    (no thread hand-offs), and the benchmarks, not the tests, measure multi-threaded speed."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
