"""Autoregressive generation for `SessaLM`: greedy / temperature / top-k / top-p sampling with a cache.

One prefill over the prompt, then one cached decode step per new token (docs/equations.md §3: O(t D) per
token). `use_cache=False` recomputes the full forward every step (the reference the cache is tested against).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from sessa.utils.checks import check_bool, check_float, check_int, check_mask, check_tensor


@dataclass
class GenerationOutput:
    new_ids: torch.Tensor  # [B, N] generated tokens (rows that stopped early are filled with pad_token_id)
    tokens_per_s: float  # new tokens (all rows) per second of the whole call, prefill included
    decode_tokens_per_s: float  # new tokens per second of the decode steps only
    prefill_s: float  # wall time of the first forward over the prompt
    total_s: float  # wall time of the whole call
    n_new_tokens: int  # N (steps taken)


def sample_next(
    logits: torch.Tensor,
    *,
    do_sample: bool,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Next tokens [B] from logits [B, V]: argmax, or a draw from softmax(logits / T) after top-k / top-p."""
    logits = logits.float()
    if not do_sample:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # drop a token when the tokens ranked above it already reach top_p (the first token always stays)
        drop = probs.cumsum(dim=-1) - probs >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _check_args(model, input_ids, max_new_tokens, temperature, top_k, top_p, do_sample, seed, attention_mask):
    """Raise TypeError/ValueError naming the first bad argument of generate."""
    if not isinstance(model, torch.nn.Module) or not callable(model):
        raise TypeError(f"model must be a sessa language model (an nn.Module), got {type(model).__name__}")
    check_tensor("input_ids", input_ids, ndim=2, integer=True)
    if input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise ValueError(f"input_ids must be [B, T] with B, T >= 1, got {tuple(input_ids.shape)}")
    check_int("max_new_tokens", max_new_tokens, lo=1)
    check_bool("do_sample", do_sample)
    check_float("temperature", temperature, lo=0.0, lo_open=True)
    check_int("top_k", top_k, lo=1, none_ok=True)
    check_float("top_p", top_p, lo=0.0, hi=1.0, lo_open=True, none_ok=True)
    check_int("seed", seed, lo=0, none_ok=True)
    if attention_mask is not None:
        check_mask("attention_mask", attention_mask, tuple(input_ids.shape), "[B, T] (the shape of input_ids)")
    limit = getattr(getattr(model, "config", None), "max_seq_len", None)
    if limit is not None and input_ids.shape[1] + max_new_tokens > limit:
        raise ValueError(
            f"prompt length {input_ids.shape[1]} + max_new_tokens {max_new_tokens} exceeds the model's "
            f"max_seq_len = {limit}; lower max_new_tokens (at most {limit - input_ids.shape[1]})"
        )


def _stop_ids(eos_token_id: int | Sequence[int] | None, vocab_size: int | None) -> list[int]:
    """eos_token_id as a list of ids in [0, vocab_size)."""
    if eos_token_id is None:
        return []
    ids = list(eos_token_id) if isinstance(eos_token_id, (list, tuple)) else [eos_token_id]
    hi = None if vocab_size is None else vocab_size - 1
    return [check_int("eos_token_id", i, lo=0, hi=hi) for i in ids]


def _emit(streamer: Any, tokens: torch.Tensor) -> None:
    """Hand new tokens [B] to a transformers-style streamer (.put) or a plain callable."""
    if streamer is None:
        return
    if hasattr(streamer, "put"):
        streamer.put(tokens)
    else:
        streamer(tokens)


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    do_sample: bool = False,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    seed: int | None = None,
    attention_mask: torch.Tensor | None = None,
    streamer: Callable[[torch.Tensor], Any] | Any = None,
    use_cache: bool = True,
) -> GenerationOutput:
    """Continue input_ids [B, T] (left-padded with attention_mask) by up to max_new_tokens tokens.

    Greedy unless do_sample; sampling draws from a torch.Generator seeded with `seed`. A row stops after
    it emits a token of eos_token_id; finished rows are filled with pad_token_id (default: the first eos).
    streamer receives each step's tokens [B] as they are produced (a callable, or an object with put/end).
    """
    _check_args(model, input_ids, max_new_tokens, temperature, top_k, top_p, do_sample, seed, attention_mask)
    check_bool("use_cache", use_cache)
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    stop = _stop_ids(eos_token_id, vocab)
    if pad_token_id is None:
        pad_token_id = stop[0] if stop else 0
    check_int("pad_token_id", pad_token_id, lo=0, hi=None if vocab is None else vocab - 1)
    device = input_ids.device
    generator = None
    if do_sample:
        generator = torch.Generator(device=device)
        if seed is not None:
            generator.manual_seed(seed)
        else:
            generator.seed()
    stop_t = torch.tensor(stop, dtype=input_ids.dtype, device=device)
    mask = None if attention_mask is None else attention_mask.to(device=device, dtype=torch.long)
    if mask is not None and bool(mask.all()):
        mask = None  # nothing padded: the faster unmasked path (the loop below reads the device anyway)
    finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=device)
    was_training = model.training
    model.eval()
    t0 = time.perf_counter()
    try:
        out = model(input_ids, attention_mask=mask, use_cache=use_cache)
        prefill_s = time.perf_counter() - t0
        ids, cache, new = input_ids, out.cache, []
        for step in range(max_new_tokens):
            kw = dict(do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p)
            token = sample_next(out.logits[:, -1], generator=generator, **kw).to(input_ids.dtype)
            token = torch.where(finished, torch.full_like(token, pad_token_id), token)
            new.append(token)
            _emit(streamer, token)
            if stop:
                finished |= torch.isin(token, stop_t)
            if bool(finished.all()) or step == max_new_tokens - 1:
                break
            if mask is not None:
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            if use_cache:
                # the cached past mask is kept by the cache: the new token is real, no mask needed
                out = model(token[:, None], cache=cache)
            else:
                ids = torch.cat([ids, token[:, None]], dim=1)
                out = model(ids, attention_mask=mask)
    finally:
        model.train(was_training)
        if streamer is not None and hasattr(streamer, "end"):
            streamer.end()
    total_s = time.perf_counter() - t0
    new_ids = torch.stack(new, dim=1)
    n = new_ids.numel()
    decode_s = max(total_s - prefill_s, 1e-9)
    return GenerationOutput(
        new_ids=new_ids,
        tokens_per_s=n / max(total_s, 1e-9),
        decode_tokens_per_s=(n - new_ids.shape[0]) / decode_s,
        prefill_s=prefill_s,
        total_s=total_s,
        n_new_tokens=new_ids.shape[1],
    )


__all__ = ["generate", "sample_next", "GenerationOutput"]
