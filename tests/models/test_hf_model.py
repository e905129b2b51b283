"""transformers integration: config, Auto* registration, init values, ties, forward, loss, conversion, save/load."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

import sessa  # noqa: F401  (registers the Auto classes)
from sessa.layers.sessa import SessaMixer
from sessa.models.cache import SessaCache
from sessa.models.config import FIELDS, SessaFields
from sessa.models.config import SessaConfig as CoreSessaConfig
from sessa.models.hf import SessaConfig, SessaForCausalLM, SessaModel, from_hf, to_hf
from sessa.models.lm import IGNORE_INDEX, SessaLM, lm_loss
from sessa.tokenization import byte_tokenizer
from sessa.utils.checks import debug_checks

TINY = dict(vocab_size=258, d_model=32, n_layers=2, n_heads=2, bos_token_id=256, eos_token_id=256, pad_token_id=257)


def tiny(**overrides) -> SessaForCausalLM:
    return SessaForCausalLM(SessaConfig(**{**TINY, **overrides})).eval()


def ids(B=2, T=9, V=256):
    return torch.randint(0, V, (B, T))


# ----- config -----------------------------------------------------------------------------------------


def test_config_fields_and_defaults_match_core():
    """The HF config inherits the core fields (written once), so names, types and defaults agree."""
    core_fields = {f.name: f for f in dataclasses.fields(CoreSessaConfig)}
    assert set(FIELDS) == set(core_fields)
    assert issubclass(SessaConfig, SessaFields) and issubclass(CoreSessaConfig, SessaFields)
    hf_fields = {f.name: f for f in dataclasses.fields(SessaConfig)}
    assert all(hf_fields[name].type == core_fields[name].type for name in FIELDS)
    hf, core = SessaConfig(), CoreSessaConfig()
    # one deliberate difference: the HF default vocabulary is the byte tokenizer's (258), the core's raw bytes
    assert {name: getattr(hf, name) for name in FIELDS} == {**dataclasses.asdict(core), "vocab_size": 258}
    assert SessaConfig.model_type == "sessa"


def test_config_aliases_conflicts_and_typos():
    assert SessaConfig(hidden_size=32, n_heads=2).d_model == 32
    assert SessaConfig(d_model=32, hidden_size=32).d_model == 32  # the same value twice is fine
    with pytest.raises(ValueError, match="hidden_size=32 contradicts d_model=64"):
        SessaConfig(d_model=64, hidden_size=32)
    with pytest.raises(ValueError, match="num_hidden_layers"):
        SessaConfig(n_layers=2, num_hidden_layers=3)
    with pytest.raises(ValueError, match="unknown SessaConfig key 'd_modle' \\(did you mean 'd_model'\\?\\)"):
        SessaConfig(d_modle=64)
    with pytest.raises(ValueError, match="did you mean 'hidden_size'"):
        SessaConfig(hiden_size=64)
    with pytest.raises(ValueError, match="n_heads"):  # an alias is checked like its field
        SessaConfig(d_model=48, num_attention_heads=5)
    # keys transformers itself passes or saves keep working
    cfg = SessaConfig(model_type="sessa", torch_dtype="float32", attn_implementation="sdpa", max_length=20,
                      transformers_version="5.0.0", architectures=["SessaForCausalLM"])
    assert cfg.dtype == torch.float32


def test_config_core_round_trip_and_aliases():
    core = CoreSessaConfig(vocab_size=100, d_model=48, n_layers=3, n_heads=4, n_kv_heads=2, rope=False,
                           feedback=False, mixer="mamba2", mixer_options={"state_size": 8})
    hf = SessaConfig.from_core(core, eos_token_id=5)
    assert hf.to_core() == core
    assert hf.mixer_options is not core.mixer_options  # copied, not shared
    assert (hf.hidden_size, hf.num_hidden_layers, hf.num_attention_heads, hf.num_key_value_heads) == (48, 3, 4, 2)
    assert hf.tie_word_embeddings is True and hf.eos_token_id == 5
    with pytest.raises(ValueError, match="core config"):
        SessaConfig.from_core(core, d_model=64)
    with pytest.raises(TypeError, match="core"):
        SessaConfig.from_core({"d_model": 48})


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        (dict(d_model=30, n_heads=4), ValueError, "n_heads"),
        (dict(gamma_max=1.0), ValueError, "gamma_max"),
        (dict(vocab_size=0), ValueError, "vocab_size"),
        (dict(impl="fast"), ValueError, "impl"),
        (dict(vocab_size=10, eos_token_id=10), ValueError, "eos_token_id"),
        (dict(use_cache="yes"), TypeError, "use_cache"),
    ],
)
def test_config_validates(kwargs, err, match):
    with pytest.raises(err, match=match):
        SessaConfig(**kwargs)


def test_config_save_load(tmp_path):
    cfg = SessaConfig(**TINY)
    cfg.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "sessa"
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, SessaConfig)
    assert loaded.to_diff_dict() == cfg.to_diff_dict()
    assert loaded.to_core() == cfg.to_core()


# ----- Auto classes, init, ties -----------------------------------------------------------------------


def test_auto_classes_build_sessa_models():
    cfg = AutoConfig.for_model("sessa", **TINY)
    assert isinstance(cfg, SessaConfig)
    assert type(AutoModelForCausalLM.from_config(cfg)) is SessaForCausalLM
    assert type(AutoModel.from_config(cfg)) is SessaModel


def _check_core_init(model: SessaForCausalLM, cfg: SessaConfig) -> None:
    core = model.model
    mixers = [m for m in model.modules() if isinstance(m, SessaMixer)]
    assert len(mixers) == cfg.n_layers
    assert all(m.gamma_bias.item() == 1.0 for m in mixers)  # b_gamma starts at 1.0 (docs/equations.md §2)
    for ln in [core.norm] + [layer.norm for layer in core.layers]:
        assert torch.equal(ln.weight, torch.ones_like(ln.weight)) and torch.equal(ln.bias, torch.zeros_like(ln.bias))
    # embedding N(0, init_std), not N(0, 1) nor transformers' default scheme
    std = core.embed_tokens.weight.std().item()
    assert 0.9 * cfg.init_std < std < 1.1 * cfg.init_std
    # Linear layers keep torch's default init: uniform within +-1/sqrt(fan_in), std = bound/sqrt(3)
    for name, lin in model.named_modules():
        if isinstance(lin, torch.nn.Linear) and name != "lm_head" and lin.weight.numel() >= 1024:
            bound = 1.0 / lin.in_features**0.5
            assert lin.weight.abs().max() <= bound
            assert 0.8 < lin.weight.std().item() * 3**0.5 / bound < 1.2, name
            if lin.bias is not None:
                assert lin.bias.abs().max() <= bound and lin.bias.abs().max() > 0


def test_init_values_preserved():
    cfg = SessaConfig(**{**TINY, "d_model": 64})
    _check_core_init(SessaForCausalLM(cfg), cfg)


def test_missing_weights_are_initialised_like_the_core(tmp_path):
    # from_pretrained builds on the meta device and initialises only what the checkpoint lacks
    cfg = SessaConfig(**{**TINY, "d_model": 64})
    model = SessaForCausalLM(cfg)
    model.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    dropped = [k for k in state if "gamma_bias" in k or k.endswith("norm.weight")]
    assert dropped
    save_file({k: v for k, v in state.items() if k not in dropped}, tmp_path / "model.safetensors",
              metadata={"format": "pt"})
    from sessa.utils.manifest import write_manifest

    write_manifest(tmp_path, ["config.json", "generation_config.json", "model.safetensors"])  # re-seal the edit
    loaded, info = SessaForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    assert set(info["missing_keys"]) == set(dropped)
    _check_core_init(loaded, cfg)
    kept = next(k for k in state if k.endswith("in_proj.weight"))
    assert torch.equal(loaded.state_dict()[kept], state[kept])


def test_tied_and_untied_embeddings(tmp_path):
    tied = tiny()
    assert tied.lm_head.weight is tied.model.embed_tokens.weight
    untied = tiny(tie_embeddings=False)
    assert untied.lm_head.weight is not untied.model.embed_tokens.weight
    untied.save_pretrained(tmp_path)
    back = SessaForCausalLM.from_pretrained(tmp_path)
    assert back.lm_head.weight is not back.model.embed_tokens.weight
    assert torch.equal(back.lm_head.weight, untied.lm_head.weight)


# ----- forward, loss, outputs ----------------------------------------------------------------------------


def test_forward_outputs_and_cache_type():
    model, x = tiny(), ids()
    out = model(x)  # eval mode: use_cache defaults to config.use_cache
    assert out.logits.shape == (2, 9, 258)
    assert isinstance(out.cache, SessaCache) and out.cache.seq_len == 9
    assert out.past_key_values is out.cache  # the transformers alias
    assert model(x, use_cache=False).cache is None
    torch.testing.assert_close(model(x, use_cache=False).logits, out.logits, rtol=0, atol=1e-6)
    tup = model(x, use_cache=False, return_dict=False)
    assert isinstance(tup, tuple) and torch.equal(tup[0], out.logits)
    base = model.model(x, output_hidden_states=True, use_cache=False)
    assert len(base.hidden_states) == 3 and torch.equal(base.hidden_states[-1], base.last_hidden_state)
    assert torch.equal(model.lm_head(base.last_hidden_state), out.logits)


def test_training_mode_does_not_cache():
    model = tiny().train()
    assert model(ids()).cache is None


def test_loss_matches_core_and_ignores_index():
    model, x = tiny(), ids()
    labels = x.clone()
    labels[:, :3] = IGNORE_INDEX
    out = model(x, labels=labels, use_cache=False)
    torch.testing.assert_close(out.loss, lm_loss(out.logits, labels))
    core = from_hf(model)
    torch.testing.assert_close(out.loss, core(x, labels=labels).loss)
    out.loss.backward()
    assert model.model.layers[0].mixer.gamma_bias.grad is not None
    # transformers' Trainer passes num_items_in_batch (gradient accumulation): sum / that count
    n = torch.tensor(5)
    summed = model(x, labels=labels, use_cache=False, num_items_in_batch=n).loss
    torch.testing.assert_close(summed, lm_loss(out.logits, labels) * (labels[:, 1:] != IGNORE_INDEX).sum() / n)


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        (dict(labels=torch.full((2, 9), 300)), ValueError, "labels"),
        (dict(labels=torch.zeros(2, 8, dtype=torch.long)), ValueError, "labels"),
        (dict(inputs_embeds=torch.zeros(2, 9, 32)), ValueError, "inputs_embeds"),
        (dict(position_ids=torch.arange(9)[None]), ValueError, "position_ids"),
        (dict(output_attentions=True), TypeError, "output_attentions"),
        (dict(use_cache="yes"), TypeError, "use_cache"),
        (dict(attention_mask=torch.ones(2, 8, dtype=torch.long)), ValueError, "attention_mask"),
    ],
)
def test_forward_validates(kwargs, err, match):
    with pytest.raises(err, match=match), debug_checks():  # debug mode: label values are checked too
        tiny()(ids(), **kwargs)


def test_forward_rejects_bad_ids():
    with pytest.raises(ValueError, match="input_ids"), debug_checks():
        tiny()(torch.full((1, 4), 258))
    with pytest.raises(ValueError, match="input_ids"):
        tiny()(None)


# ----- conversion and save/load ---------------------------------------------------------------------------


def test_core_conversion_is_bit_identical():
    core = SessaLM(CoreSessaConfig(vocab_size=258, d_model=32, n_layers=2, n_heads=2)).eval()
    x = ids()
    hf = to_hf(core, eos_token_id=256)
    assert hf.config.eos_token_id == 256 and not hf.training
    assert torch.equal(hf(x, use_cache=False).logits, core(x).logits)
    back = from_hf(hf)
    assert isinstance(back, SessaLM) and back.config == core.config
    assert torch.equal(back(x).logits, core(x).logits)
    assert back.lm_head.weight is back.model.embed_tokens.weight  # the core tie survives the trip
    assert list(hf.state_dict()) == list(core.state_dict())  # one layout: the same keys, in the same order
    with pytest.raises(TypeError, match="core_model"):
        to_hf(hf)
    with pytest.raises(TypeError, match="hf_model"):
        from_hf(core)


def test_save_load_round_trip_bit_identical(tmp_path):
    model, x = tiny(), ids()
    tok = byte_tokenizer()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not (tmp_path / "pytorch_model.bin").exists()
    # written through a temporary sub-folder (os.replace per file) that is gone afterwards
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "config.json", "generation_config.json", "manifest.json", "model.safetensors", "tokenizer.json",
        "tokenizer_config.json"
    ]
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(loaded) is SessaForCausalLM and not loaded.training
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    for use_cache in (False, True):
        assert torch.equal(loaded(x, use_cache=use_cache).logits, model(x, use_cache=use_cache).logits)
    base = AutoModel.from_pretrained(tmp_path)  # the head-less model reads the same folder
    assert torch.equal(base(x).last_hidden_state, model.model(x).last_hidden_state)
    assert AutoTokenizer.from_pretrained(tmp_path)("hi")["input_ids"] == [104, 105]


def test_resize_token_embeddings():
    model = tiny()
    model.resize_token_embeddings(300, mean_resizing=False)
    assert model.config.vocab_size == model.model.embed_tokens.num_embeddings == 300
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert model(torch.tensor([[299, 1]])).logits.shape == (1, 2, 300)
    with pytest.raises(TypeError, match="nn.Embedding"):
        model.set_input_embeddings(torch.nn.Linear(2, 2))


def test_save_overwrites_and_validates(tmp_path):
    first, second = tiny(), tiny()
    first.save_pretrained(tmp_path)
    second.save_pretrained(tmp_path)  # replaces the files of the first save
    loaded = SessaForCausalLM.from_pretrained(tmp_path)
    assert torch.equal(loaded.lm_head.weight, second.lm_head.weight)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="save_directory"):
        first.save_pretrained(tmp_path / "afile")


def test_int32_ids_and_labels_are_cast():
    model = tiny().eval()
    x = ids()
    want = model(x, labels=x, use_cache=False)
    got = model(x.int(), labels=x.int(), use_cache=False)
    assert torch.equal(got.logits, want.logits) and torch.equal(got.loss, want.loss)
