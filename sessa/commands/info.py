"""`sessa info`: show a configuration and its parameter counts."""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--n-layers", type=int, default=4)
    p.add_argument("--n-heads", type=int, default=1)
    p.add_argument("--vocab-size", type=int, default=256)
    p.add_argument("--mixer", default="sessa")


def run(args: argparse.Namespace) -> int:
    from sessa.models import SessaConfig, SessaLM

    cfg = SessaConfig(
        vocab_size=args.vocab_size, d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads,
        mixer=args.mixer,
    )
    model = SessaLM(cfg)
    print(json.dumps(cfg.to_dict(), indent=2))
    print(f"parameters: {model.num_parameters():,} ({model.num_parameters(True):,} without embeddings)")
    return 0
