"""Shared test set-up: deterministic seeds, few threads (CI has 2 cores), helpers importable."""

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
