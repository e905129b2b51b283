"""`sessa generate`: continue a prompt with a checkpoint (or a random model), streaming tokens as produced."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from sessa.commands.common import THREADS_HELP, device_arg, run_with_threads, threads_arg

DEMO_CONFIG = {"vocab_size": 258, "d_model": 64, "n_layers": 2, "n_heads": 2}


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="checkpoint folder or a training run's out_dir")
    src.add_argument("--random-init", action="store_true", help="random model (a demo: prints noise)")
    p.add_argument("--config", help="JSON/YAML file of SessaConfig fields for --random-init")
    p.add_argument("--prompt", required=True, help="text to continue")
    p.add_argument("--tokenizer", default="bytes", help='"bytes" (default) or a tokenizer folder')
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--sample", action="store_true",
                   help="sample instead of greedy decoding (implied by --temperature, --top-k or --top-p)")
    p.add_argument("--temperature", type=float, default=None, help="sampling temperature (> 0; implies --sample)")
    p.add_argument("--top-k", type=int, default=None, help="sample from the k likeliest tokens (implies --sample)")
    p.add_argument("--top-p", type=float, default=None,
                   help="sample from the smallest set of tokens with this total probability (implies --sample)")
    p.add_argument("--seed", type=int, default=None, help="seed of the sampler (reproducible samples)")
    p.add_argument("--eos-id", type=int, default=None, help="stop token id (default: the tokenizer's eos)")
    p.add_argument("--no-stop", action="store_true", help="ignore the stop token")
    p.add_argument("--no-cache", action="store_true", help="recompute the full forward every step (slow)")
    p.add_argument("--device", default="cpu", type=device_arg, help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=threads_arg, default="auto", metavar="N|auto", help=THREADS_HELP)


def _read_config_file(path: str) -> dict[str, Any]:
    """SessaConfig fields from a JSON or YAML file (a nested "model" section is accepted)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--config: no such file {path!r}")
    from sessa.utils.io import load_yaml_file, read_json_file

    d = load_yaml_file(path, what="--config") if path.endswith((".yaml", ".yml")) else \
        read_json_file(path, what="--config")
    if isinstance(d, dict) and isinstance(d.get("model"), dict):
        d = d["model"]
    if not isinstance(d, dict):
        raise ValueError(f"--config must hold a mapping of SessaConfig fields, got {type(d).__name__}")
    return d


def load_model(path: str, device: str = "cpu"):
    """A SessaLM from a checkpoint folder (or a run's out_dir) via sessa.train.checkpoint."""
    from sessa.train.checkpoint import load_checkpoint

    return load_checkpoint(path, device=device)


def _tokenizer(name: str):
    """(encode, decode, eos_id) for the tokenizer."""
    from sessa.tokenization import load_tokenizer

    tok = load_tokenizer(name)
    return (lambda s: tok.encode(s, add_special_tokens=False),
            lambda ids: tok.decode(ids, skip_special_tokens=True), tok.eos_token_id)


class _Printer:
    """Streams decoded text: prints the new suffix after each token, holding back an incomplete UTF-8 char."""

    def __init__(self, decode, prompt: str) -> None:
        self.decode, self.ids, self.printed, self.prompt = decode, [], 0, prompt

    def __call__(self, tokens) -> None:
        if self.prompt:  # printed with the first token, so an argument error prints nothing
            sys.stdout.write(self.prompt)
            self.prompt = ""
        self.ids.append(int(tokens[0]))
        text = self.decode(self.ids)
        if text.endswith("\ufffd"):  # partial multi-byte character: wait for its next byte
            return
        sys.stdout.write(text[self.printed:])
        sys.stdout.flush()
        self.printed = len(text)

    def end(self) -> None:
        text = self.decode(self.ids)
        sys.stdout.write(text[self.printed:] + "\n")
        sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    """The command with --threads applied; torch's thread count is restored afterwards (in-process callers)."""
    return run_with_threads(args, _run)


def _run(args: argparse.Namespace) -> int:
    import torch

    from sessa.generation import generate
    from sessa.models import SessaConfig, SessaLM
    from sessa.models.lm import supports_cache

    if args.random_init:
        cfg = dict(DEMO_CONFIG)
        if args.config:
            cfg.update(_read_config_file(args.config))
        torch.manual_seed(0 if args.seed is None else args.seed)
        model = SessaLM(SessaConfig.from_dict(cfg))
    else:
        if args.config:
            raise ValueError("--config is only used with --random-init (a checkpoint has its own config)")
        model = load_model(args.checkpoint, args.device)
    model = model.to(args.device)
    encode, decode, eos = _tokenizer(args.tokenizer)
    ids = encode(args.prompt)
    if not ids:
        raise ValueError("--prompt must not be empty")
    vocab = model.config.vocab_size
    if max(ids) >= vocab:
        raise ValueError(f"prompt token id {max(ids)} >= the model's vocab_size {vocab}: wrong --tokenizer?")
    if args.eos_id is not None and not 0 <= args.eos_id < vocab:
        raise ValueError(f"--eos-id must lie in [0, vocab_size = {vocab}), got {args.eos_id}")
    stop = None if args.no_stop else (args.eos_id if args.eos_id is not None else eos)
    if stop is not None and stop >= vocab:
        stop = None  # the tokenizer's eos lies outside this model's vocabulary: it can never be emitted
    # Like transformers, a sampling parameter means sampling: it is never silently ignored.
    implied = [f for f, v in (("--temperature", args.temperature), ("--top-k", args.top_k),
                              ("--top-p", args.top_p)) if v is not None]
    sample = args.sample or bool(implied)
    if implied and not args.sample:
        print(f"sampling (implied by {', '.join(implied)})", file=sys.stderr)
    out = generate(
        model, torch.tensor([ids], device=args.device), max_new_tokens=args.max_new_tokens,
        temperature=1.0 if args.temperature is None else args.temperature, top_k=args.top_k, top_p=args.top_p,
        do_sample=sample,
        eos_token_id=stop, seed=args.seed, streamer=_Printer(decode, args.prompt),
        use_cache=not args.no_cache and supports_cache(model.config),  # baselines without a cache recompute
    )
    print(
        f"[{out.n_new_tokens} tokens in {out.total_s:.2f} s: {out.tokens_per_s:.1f} tokens/s overall, "
        f"{out.decode_tokens_per_s:.1f} tokens/s decode, prefill {len(ids)} tokens in {out.prefill_s:.3f} s]",
        file=sys.stderr,
    )
    return 0
