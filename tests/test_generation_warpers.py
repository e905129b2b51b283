"""sessa.generation's top-k / top-p against transformers' logits warpers (why ours stays hand-written:
top-k is the same rule; top-p is the same rule up to rounding but breaks ties the other way)."""

from __future__ import annotations

import pytest
import torch

from sessa.generation import sample_next

warpers = pytest.importorskip("transformers.generation.logits_process")


def _draw_after(logits: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=g).squeeze(-1)


@pytest.mark.parametrize("k", [1, 2, 7, 50, 258, 400])
def test_top_k_equals_transformers(k):
    logits = torch.randn(64, 258, generator=torch.Generator().manual_seed(k)) * 3
    ours = sample_next(logits, do_sample=True, temperature=0.7, top_k=k, generator=torch.Generator().manual_seed(1))
    theirs = _draw_after(warpers.TopKLogitsWarper(k)(None, logits / 0.7), seed=1)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("p", [0.05, 0.5, 0.9, 0.99])
def test_top_p_equals_transformers_without_ties(p):
    g = torch.Generator().manual_seed(0)
    logits = torch.randperm(258, generator=g).float().expand(16, -1) * 0.05  # distinct, well-separated values
    ours = sample_next(logits, do_sample=True, top_p=p, generator=torch.Generator().manual_seed(2))
    theirs = _draw_after(warpers.TopPLogitsWarper(p)(None, logits.clone()), seed=2)
    assert torch.equal(ours, theirs)


def test_top_p_ties_differ_from_transformers():
    # four equal logits, top_p 0.5: both keep two tokens, we the first two, transformers the last two
    logits = torch.ones(1, 4)
    kept = sample_next(logits.expand(256, -1), do_sample=True, top_p=0.5, generator=torch.Generator().manual_seed(0))
    assert set(kept.tolist()) == {0, 1}
    theirs = warpers.TopPLogitsWarper(0.5)(None, logits.clone())
    assert torch.isfinite(theirs).tolist() == [[False, False, True, True]]
