"""`sessa info`: a model's configuration and parameter counts, from flags, a config file or a checkpoint.

Nothing is allocated: the model is built on torch's "meta" device, so even a very large config is shown
at once.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

_FLAGS = {"d_model": int, "n_layers": int, "n_heads": int, "vocab_size": int, "mixer": str}


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--config", help="a YAML training config, or a JSON/YAML file of model fields")
    src.add_argument("--checkpoint", help="a checkpoint folder, a saved model folder or a run's out_dir")
    for name, typ in _FLAGS.items():
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=typ, default=None,
                       help=f"model field {name} (overrides the file's)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _model_fields(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The model's config fields and where they came from."""
    if args.checkpoint:
        from sessa.train.checkpoint import CONFIG_FILE, read_json, resolve_checkpoint

        folder = resolve_checkpoint(args.checkpoint)
        data = read_json(os.path.join(folder, CONFIG_FILE))
        fields = data.get("model", data)
        source = folder
    elif args.config:
        from sessa.train.config import load_yaml

        if not os.path.isfile(args.config):
            raise FileNotFoundError(f"--config: no such file {args.config!r}")
        # only model fields are read here: naming a task factory does no harm, nothing is imported
        data = load_yaml(args.config, allow_task_import=True)
        fields = data.get("model", data)
        source = args.config
    else:
        fields, source = {}, "defaults"
    if not isinstance(fields, dict):
        raise ValueError(f"{source}: the model config must be a mapping, got {type(fields).__name__}")
    fields = dict(fields)
    fields.update({k: getattr(args, k) for k in _FLAGS if getattr(args, k) is not None})
    return fields, source


def run(args: argparse.Namespace) -> int:
    import torch

    from sessa.models import SessaConfig, SessaLM

    fields, source = _model_fields(args)
    cfg = SessaConfig.from_dict(fields)
    with torch.device("meta"):
        model = SessaLM(cfg)
    total, body = model.num_parameters(), model.num_parameters(exclude_embeddings=True)
    if args.json:
        print(json.dumps({"source": source, "config": cfg.to_dict(), "parameters": total,
                          "parameters_without_embeddings": body}, indent=2))
        return 0
    print(f"source: {source}")
    print(json.dumps(cfg.to_dict(), indent=2))
    print(f"parameters: {total:,} ({body:,} without embeddings; {4 * total / 2**20:,.1f} MiB in fp32)")
    return 0
