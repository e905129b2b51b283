"""SessaModel / SessaForCausalLM: the transformers PreTrainedModel classes of the Sessa LM.

Nothing is re-implemented: `SessaModel` holds the core modules (`embed_tokens`, `layers`, `norm`, built by
`sessa.models.lm.decoder_modules`) and runs the core `decoder_forward`; `SessaForCausalLM` adds the (tied)
LM head and the core `lm_loss`. Weight names are those of the core `SessaLM`, so logits equal the core
model's bit for bit, and the cache is the core `sessa.models.cache.SessaCache`.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from typing import Any

import torch
import torch.utils.checkpoint
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.modeling_utils import slice_logits_to_keep
from transformers.utils import logging
from transformers.utils.deprecation import deprecate_kwarg

from sessa.models.cache import SessaCache
from sessa.models.hf_config import SessaConfig
from sessa.models.legacy import V0_1_KEY_MAPPING
from sessa.models.lm import check_labels, decoder_forward, decoder_modules, lm_loss, supports_cache
from sessa.utils.checks import check_int
from sessa.utils.io import MAX_CONFIG_BYTES, atomic_files, read_json_file
from sessa.utils.manifest import MANIFEST_FILE, read_manifest, verify_manifest, write_manifest

logger = logging.get_logger(__name__)

# keyword arguments transformers may pass that we accept (checked, never silently used otherwise)
_PASSTHROUGH_KWARGS = frozenset({"num_items_in_batch"})
# keyword arguments of generate that transformers leaves among the model's inputs (not forward arguments)
_GENERATE_ONLY_KWARGS = ("tokenizer", "assistant_tokenizer")


def _defines_the_model(name: str) -> bool:
    return name == "config.json" or name.endswith((".safetensors", ".bin", ".index.json"))


def _check_local_folder(folder: str) -> None:
    """Bounded config.json; when the folder has a manifest (ours always do; a folder from elsewhere without
    one loads as transformers would load it), config.json and the weight files are checked against it.
    Other files (generation_config.json, tokenizer files) may be edited by hand."""
    config = os.path.join(folder, "config.json")
    if os.path.isfile(config):
        read_json_file(config, max_bytes=MAX_CONFIG_BYTES, what="config.json")
    if os.path.isfile(os.path.join(folder, MANIFEST_FILE)):
        listed = read_manifest(folder)
        verify_manifest(folder, required=("config.json",), names=[n for n in listed if _defines_the_model(n)])


class SessaPreTrainedModel(PreTrainedModel):
    """Shared transformers settings; `_init_weights` reproduces the core model's initial values."""

    config_class = SessaConfig
    config: SessaConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    # per-block activation checkpointing (gradient_checkpointing_enable / activation_checkpointing_enable)
    supports_gradient_checkpointing = True
    _no_split_modules = ["GatedBlock", "LlamaBlock"]
    # attn_implementation "sdpa" (the default) and "eager" are both accepted and run the same code: every
    # attention-like branch of a Sessa block already calls torch's scaled_dot_product_attention
    _supports_sdpa = True
    # the cache grows with the sequence and cannot be cropped: no assisted decoding
    _is_stateful = True

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any):
        """transformers' from_pretrained, then every CPU weight moved into its own aligned memory.

        Weights loaded from safetensors are views into the memory-mapped file at arbitrary byte offsets;
        CPU matmul kernels round differently on unaligned data, so logits would not match the saved model
        bit for bit (and the file would stay mapped). One copy per tensor fixes both. Weight names of
        sessa 0.1 folders are renamed on load.

        A local folder written by save_pretrained carries manifest.json: every file it lists is checked
        (size, sha256) before transformers reads anything, and config.json is bounded in size and depth.
        """
        kwargs.setdefault("key_mapping", V0_1_KEY_MAPPING)  # folders saved by sessa 0.1 (sessa.models.legacy)
        path = args[0] if args else kwargs.get("pretrained_model_name_or_path")
        if isinstance(path, (str, os.PathLike)) and os.path.isdir(path):
            _check_local_folder(os.fspath(path))
        result = super().from_pretrained(*args, **kwargs)
        model = result[0] if isinstance(result, tuple) else result
        _own_cpu_storage(model)
        return result

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        """transformers' save_pretrained, written to a temporary sub-folder and moved in file by file with
        os.replace, so an interrupted save never leaves a half-written file under a final name.

        Weights are saved under today's names: the 0.1 renaming applied on load is not reverted (transformers
        would otherwise write the old names back, as save_original_format=True does for its own models).
        """
        kwargs.setdefault("save_original_format", False)
        if kwargs.get("push_to_hub"):
            return super().save_pretrained(save_directory, *args, **kwargs)
        if not isinstance(save_directory, (str, os.PathLike)):
            raise TypeError(f"save_directory must be a str or path, got {type(save_directory).__name__}")
        save_directory = os.fspath(save_directory)
        if os.path.isfile(save_directory):
            raise ValueError(f"save_directory must be a folder, {save_directory!r} is a file")
        with atomic_files(save_directory) as tmp:
            super().save_pretrained(tmp, *args, **kwargs)
            names = sorted(n for n in os.listdir(tmp) if os.path.isfile(os.path.join(tmp, n)))
        # last: the size and sha256 of every file just written (checked by from_pretrained)
        write_manifest(save_directory, names)

    def _set_gradient_checkpointing(
        self,
        enable: bool = True,
        gradient_checkpointing_func: Any = torch.utils.checkpoint.checkpoint,
        every_n_layers: int = 1,
    ) -> None:
        """transformers' switch (sets `SessaModel.gradient_checkpointing` and the function), plus every_n_layers:
        SessaModel checkpoints blocks 0, n, 2n, ... of `layers` itself (our blocks are core modules)."""
        check_int("every_n_layers", every_n_layers, lo=1)
        super()._set_gradient_checkpointing(enable, gradient_checkpointing_func, every_n_layers)
        for module in self.modules():
            if isinstance(module, SessaModel):
                module.checkpoint_every = every_n_layers

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        """False: generate must not create a DynamicCache; our forward starts a SessaCache itself."""
        return False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Core init: embedding N(0, init_std), gamma_bias = 1.0, every other module its constructor's init.

        Runs on fresh models and, after from_pretrained, only for weights the checkpoint lacks.
        """
        if isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=self.config.init_std)
        elif callable(getattr(module, "reset_parameters", None)):
            # Linear: torch's kaiming-uniform weight / fan-in uniform bias (as the authors); LayerNorm: (1, 0)
            module.reset_parameters()
        elif callable(getattr(module, "init_mamba2_weights", None)):
            module.init_mamba2_weights()  # the transformers Mamba2 mixer of the "mamba2" baseline (A_log, D, dt)
        elif "RMSNorm" in type(module).__name__ and isinstance(getattr(module, "weight", None), nn.Parameter):
            init.ones_(module.weight)
        gamma_bias = getattr(module, "gamma_bias", None)
        if isinstance(gamma_bias, nn.Parameter):  # b_gamma of a Sessa mixer (docs/equations.md §2)
            init.constant_(gamma_bias, 1.0)


class SessaModel(SessaPreTrainedModel):
    """embed_tokens -> n_layers gated blocks (`layers`) -> final LayerNorm (`norm`); returns the normed states."""

    def __init__(self, config: SessaConfig) -> None:
        if not isinstance(config, SessaConfig):
            raise TypeError(f"config must be a sessa.models.hf.SessaConfig, got {type(config).__name__}")
        super().__init__(config)
        self.embed_tokens, self.layers, self.norm = decoder_modules(config)
        # baseline mixers (e.g. attention) may not take a cache: then use_cache defaults to False
        self.supports_cache = supports_cache(config)
        # set by gradient_checkpointing_enable (transformers' _set_gradient_checkpointing)
        self.gradient_checkpointing = False
        self.checkpoint_every = 1
        self._gradient_checkpointing_func = functools.partial(torch.utils.checkpoint.checkpoint, use_reentrant=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        if not isinstance(value, nn.Embedding):
            raise TypeError(f"value must be an nn.Embedding, got {type(value).__name__}")
        self.embed_tokens = value  # input ids are checked against its num_embeddings

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: SessaCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPast | tuple:
        """input_ids [B, T] (+ attention_mask [B, past + T], cache) -> last_hidden_state [B, T, D], cache."""
        _check_kwargs(kwargs, allowed=frozenset())
        h, cache, hidden = self._run(input_ids, attention_mask, cache, inputs_embeds, use_cache, output_hidden_states)
        out = BaseModelOutputWithPast(last_hidden_state=h, cache=cache, hidden_states=hidden)
        return out if _return_dict(return_dict, self.config) else out.to_tuple()

    def _run(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        cache: SessaCache | None,
        inputs_embeds: torch.Tensor | None,
        use_cache: bool | None,
        output_hidden_states: bool | None,
    ) -> tuple[torch.Tensor, SessaCache | None, tuple[torch.Tensor, ...] | None]:
        """The core decoder forward with transformers' conventions (use_cache default, mask, hidden states)."""
        if inputs_embeds is not None:
            raise ValueError("inputs_embeds is not supported by Sessa models; pass input_ids")
        if input_ids is None:
            raise ValueError("input_ids is required (a [B, T] LongTensor)")
        if use_cache is None:
            use_cache = bool(self.config.use_cache) and not self.training and self.supports_cache
        if not isinstance(use_cache, bool):
            raise TypeError(f"use_cache must be a bool or None, got {use_cache!r}")
        if output_hidden_states is None:
            output_hidden_states = bool(self.config.output_hidden_states)
        mask = _drop_all_ones(attention_mask, input_ids, cache)
        checkpoint = None
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            if use_cache or cache is not None:
                # a recompute would update the cache a second time: this forward runs without checkpointing
                logger.warning_once("gradient checkpointing is skipped for forwards with a cache (use_cache=True)")
            else:
                checkpoint = self._gradient_checkpointing_func
        with _capture_hidden(self, output_hidden_states) as hidden:
            h, cache = decoder_forward(self, input_ids, attention_mask=mask, cache=cache,
                                       use_cache=use_cache or cache is not None, checkpoint=checkpoint,
                                       checkpoint_every=self.checkpoint_every)
        states = None
        if output_hidden_states:
            hidden[-1] = h  # the last entry is the normed final state, as in transformers' models
            states = tuple(hidden)
        return h, cache, states


class SessaForCausalLM(SessaPreTrainedModel, GenerationMixin):
    """SessaModel + LM head (tied to the embedding when config.tie_embeddings)."""

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: SessaConfig) -> None:
        if not isinstance(config, SessaConfig):
            raise TypeError(f"config must be a sessa.models.hf.SessaConfig, got {type(config).__name__}")
        super().__init__(config)
        self.model = SessaModel(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.set_input_embeddings(value)

    def generate(self, *args: Any, **kwargs: Any):
        """GenerationMixin.generate; for mixers without a cache (baselines) use_cache defaults to False.

        The whole sequence (prompt + new tokens) must fit in config.max_seq_len: a longer request raises
        ValueError before any token is generated.
        """
        if not self.model.supports_cache:
            kwargs.setdefault("use_cache", False)  # generate would otherwise feed only the last token
        return super().generate(*args, **kwargs)

    def _validate_generated_length(self, generation_config: Any, input_ids_length: int,
                                   has_default_max_length: bool) -> None:
        """transformers' checks, then: the final length (prompt + max_new_tokens) fits config.max_seq_len."""
        super()._validate_generated_length(generation_config, input_ids_length, has_default_max_length)
        limit = self.config.max_seq_len
        if generation_config.max_length > limit:
            asked = (f"max_new_tokens {generation_config.max_new_tokens}" if generation_config.max_new_tokens
                     is not None else f"max_length {generation_config.max_length}")
            room = f"max_new_tokens={limit - input_ids_length}" if input_ids_length < limit else "a shorter prompt"
            raise ValueError(f"prompt length {input_ids_length} with {asked} exceeds the model's max_seq_len = "
                             f"{limit} (the longest sequence generate produces); pass {room}, or raise max_seq_len in "
                             "the config if the model should run longer")

    def prepare_inputs_for_generation(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """GenerationMixin's, minus what generate keeps among the model arguments for itself (the tokenizer
        for stop_strings): the forward rejects unknown keywords."""
        for key in _GENERATE_ONLY_KWARGS:
            kwargs.pop(key, None)
        return super().prepare_inputs_for_generation(*args, **kwargs)

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: SessaCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast | tuple:
        """logits = lm_head(SessaModel(input_ids)); with labels [B, T] (aligned, shifted inside), lm_loss.

        num_items_in_batch (passed by transformers' Trainer under gradient accumulation) turns the loss into
        the summed token loss divided by that count.
        """
        _check_kwargs(kwargs, allowed=_PASSTHROUGH_KWARGS)
        h, cache, hidden = self.model._run(
            input_ids, attention_mask, cache, inputs_embeds, use_cache, output_hidden_states
        )
        logits = self.lm_head(slice_logits_to_keep(h, logits_to_keep))
        loss = None
        if labels is not None:
            labels = check_labels(labels, input_ids, self.config.vocab_size)
            if logits.shape[1] != labels.shape[1]:
                raise ValueError("labels need logits at every position: use logits_to_keep=0 with labels")
            n_items = kwargs.get("num_items_in_batch")
            if n_items is None:
                loss = lm_loss(logits, labels)
            else:
                n_items = n_items.to(logits.device) if isinstance(n_items, torch.Tensor) else n_items
                loss = lm_loss(logits, labels, reduction="sum") / n_items
        out = CausalLMOutputWithPast(loss=loss, logits=logits, cache=cache, hidden_states=hidden)
        return out if _return_dict(return_dict, self.config) else out.to_tuple()


@torch.no_grad()
def _own_cpu_storage(model: nn.Module) -> None:
    """Replace each CPU parameter/buffer's data by a fresh (64-byte aligned, unmapped) copy; ties are kept."""
    seen: set[int] = set()
    for module in model.modules():
        for tensors in (module._parameters, module._buffers):
            for t in tensors.values():
                if t is None or id(t) in seen or t.device.type != "cpu":
                    continue
                seen.add(id(t))
                t.data = t.data.clone()  # same Parameter object, so tied weights stay tied


def _check_kwargs(kwargs: dict[str, Any], allowed: frozenset[str]) -> None:
    """Reject keyword arguments we would otherwise ignore (position_ids, output_attentions=True, ...)."""
    for key, value in kwargs.items():
        if key in allowed:
            continue
        if key == "output_attentions" and not value:
            continue  # asking for no attention maps is fine: we never return any
        if key == "position_ids":
            raise ValueError("position_ids is not supported: RoPE positions count the real tokens of "
                             "attention_mask (pass attention_mask for padded rows)")
        raise TypeError(f"unexpected keyword argument {key!r} for a Sessa model")


def _return_dict(return_dict: bool | None, config: SessaConfig) -> bool:
    return bool(config.return_dict) if return_dict is None else bool(return_dict)


def _drop_all_ones(attention_mask: object, input_ids: object, cache: object) -> object:
    """None for a well-shaped all-ones mask (same result, and works for mixers without mask support).

    Anything else goes to the core unchanged, which validates it (shape [B, past + T], 0/1 values).
    """
    if not (isinstance(attention_mask, torch.Tensor) and isinstance(input_ids, torch.Tensor)):
        return attention_mask
    if isinstance(cache, SessaCache) and cache.attention_mask is not None:
        return attention_mask  # the past was padded: the core must check the mask against it
    past = cache.seq_len if isinstance(cache, SessaCache) else 0
    if input_ids.ndim != 2 or tuple(attention_mask.shape) != (input_ids.shape[0], past + input_ids.shape[1]):
        return attention_mask
    if attention_mask.is_floating_point() or attention_mask.is_complex() or torch.compiler.is_compiling():
        return attention_mask  # (compiled: no host read, the core takes the mask as given)
    if not bool((attention_mask == 1).all()):
        return attention_mask
    return None


@contextlib.contextmanager
def _capture_hidden(model: SessaModel, enabled: bool) -> Iterator[list[torch.Tensor]]:
    """Collect the embedding output and every block's output (forward hooks, removed afterwards).

    The caller replaces the last entry by the final-norm state, giving transformers' N + 1 entries
    (embeddings, block 1, ..., block N-1, norm(block N)).
    """
    states: list[torch.Tensor] = []
    if not enabled:
        yield states
        return

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        states.append(output[0] if isinstance(output, tuple) else output)

    handles = [model.embed_tokens.register_forward_hook(hook)] + [m.register_forward_hook(hook) for m in model.layers]
    try:
        yield states
    finally:
        for handle in handles:
            handle.remove()


__all__ = ["SessaPreTrainedModel", "SessaModel", "SessaForCausalLM"]
