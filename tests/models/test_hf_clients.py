"""Hugging Face clients on Sessa models: attn_implementation, PEFT LoRA, accelerate, config defaults, loading."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import AutoModelForCausalLM

import sessa  # noqa: F401  (registers the Auto classes)
from sessa.models.hf import SessaConfig, SessaForCausalLM

TINY = dict(vocab_size=258, d_model=32, n_layers=2, n_heads=2)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(sessa.__file__)))  # the checkout holding sessa/


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("sessa")
    SessaForCausalLM(SessaConfig(**TINY)).save_pretrained(folder)
    return folder


def test_attn_implementation_sdpa_and_eager_accepted(saved):
    x = torch.randint(0, 256, (2, 9))
    ref = AutoModelForCausalLM.from_pretrained(saved).eval()
    assert ref.config._attn_implementation == "sdpa"  # transformers' default, now that it is supported
    with torch.no_grad():
        expected = ref(x).logits
    for impl in ("sdpa", "eager"):
        model = AutoModelForCausalLM.from_pretrained(saved, attn_implementation=impl).eval()
        assert model.config._attn_implementation == impl
        with torch.no_grad():
            torch.testing.assert_close(model(x).logits, expected, rtol=0, atol=0)
        assert AutoModelForCausalLM.from_config(SessaConfig(**TINY), attn_implementation=impl).config \
            ._attn_implementation == impl
    with pytest.raises(ValueError, match="attn_implementation"):
        AutoModelForCausalLM.from_pretrained(saved, attn_implementation="bogus")


# ----- PEFT ------------------------------------------------------------------------------------------------


# PEFT itself still calls transformers' deprecated is_gradient_checkpointing
PEFT_WARNING = "ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"


@pytest.mark.filterwarnings(PEFT_WARNING)
def test_peft_lora_default_targets_train_and_merge(tmp_path):
    """LoraConfig without target_modules: the documented default targets; a train step; merge equals the adapter."""
    peft = pytest.importorskip("peft")
    from sessa.models.hf import PEFT_TARGET_MODULES

    torch.manual_seed(0)
    model = SessaForCausalLM(SessaConfig(**TINY))
    lora = peft.get_peft_model(model, peft.LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8))
    assert set(lora.peft_config["default"].target_modules) == set(PEFT_TARGET_MODULES)
    wrapped = {name.rsplit(".", 1)[-1] for name, m in lora.named_modules() if isinstance(m, peft.tuners.lora.Linear)}
    assert wrapped == set(PEFT_TARGET_MODULES)
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)

    x = torch.randint(0, 256, (2, 10))
    opt = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-2)
    frozen = {n: p.detach().clone() for n, p in lora.named_parameters() if not p.requires_grad}
    losses = []
    for _ in range(3):
        loss = lora(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(torch.equal(p, frozen[n]) for n, p in lora.named_parameters() if not p.requires_grad)

    lora.eval()
    with torch.no_grad():
        adapted = lora(input_ids=x).logits
    lora.save_pretrained(tmp_path / "adapter")
    merged = lora.merge_and_unload()
    assert type(merged) is SessaForCausalLM
    with torch.no_grad():
        torch.testing.assert_close(merged(x).logits, adapted, rtol=1e-5, atol=1e-5)
    merged.save_pretrained(tmp_path / "merged")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x).logits, adapted, rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings(PEFT_WARNING)
def test_peft_lora_with_gradient_checkpointing():
    """The usual memory-saving combination: LoRA + activation checkpointing gives the plain LoRA gradients."""
    peft = pytest.importorskip("peft")
    x = torch.randint(0, 256, (2, 10))
    grads = []
    for gc in (False, True):
        torch.manual_seed(0)
        model = SessaForCausalLM(SessaConfig(**TINY)).double()
        if gc:
            model.activation_checkpointing_enable()
        lora = peft.get_peft_model(model, peft.LoraConfig(task_type="CAUSAL_LM", r=4, init_lora_weights=False))
        lora.train()
        lora(input_ids=x, labels=x).loss.backward()
        grads.append({n: p.grad for n, p in lora.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-10, atol=1e-12, msg=name)


# ----- accelerate ------------------------------------------------------------------------------------------


def test_accelerate_prepare_step_save_and_load_state(tmp_path):
    """prepare, one step, save_state; a fresh model + optimizer restored by load_state continue identically."""
    accelerate = pytest.importorskip("accelerate")
    x = torch.randint(0, 256, (2, 10))

    def setup():
        torch.manual_seed(0)
        acc = accelerate.Accelerator(cpu=True)
        model = SessaForCausalLM(SessaConfig(**TINY))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        return (acc, *acc.prepare(model, opt))

    def step(acc, model, opt):
        loss = model(x, labels=x).loss
        acc.backward(loss)
        opt.step()
        opt.zero_grad()
        return loss.detach()

    acc, model, opt = setup()
    step(acc, model, opt)
    acc.save_state(tmp_path / "state")
    expected = step(acc, model, opt), {k: v.clone() for k, v in model.state_dict().items()}

    acc2, model2, opt2 = setup()
    acc2.load_state(tmp_path / "state")
    got = step(acc2, model2, opt2), model2.state_dict()
    torch.testing.assert_close(got[0], expected[0], rtol=0, atol=0)
    for name, value in expected[1].items():
        torch.testing.assert_close(got[1][name], value, rtol=0, atol=0, msg=name)
    assert model2.lm_head.weight is model2.model.embed_tokens.weight  # the tie survives the round trip


# ----- config defaults -------------------------------------------------------------------------------------


def test_config_defaults_fit_the_byte_tokenizer(tmp_path):
    from sessa.tokenization import byte_tokenizer

    tok = byte_tokenizer()
    cfg = SessaConfig()
    assert cfg.vocab_size == len(tok) == 258
    assert (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id) == (tok.bos_token_id, tok.eos_token_id,
                                                                      tok.pad_token_id) == (256, 256, 257)
    model = SessaForCausalLM(SessaConfig(d_model=32, n_layers=1)).eval()
    assert model.generation_config.eos_token_id == 256 and model.generation_config.pad_token_id == 257
    batch = tok(["hi", "hello"], return_tensors="pt", padding=True, padding_side="left")
    assert model.generate(**batch, max_new_tokens=3, do_sample=False).shape[0] == 2
    # another vocabulary size: no token ids unless given (id 256 may mean anything there)
    assert SessaConfig(vocab_size=100).eos_token_id is None
    assert SessaConfig(vocab_size=4096, eos_token_id=256).pad_token_id is None
    assert SessaConfig(vocab_size=258, eos_token_id=None).bos_token_id == 256  # each id on its own
    with pytest.raises(ValueError, match="eos_token_id"):
        SessaConfig(vocab_size=100, eos_token_id=256)
    # an explicit None survives save/load
    SessaConfig(eos_token_id=None).save_pretrained(tmp_path)
    loaded = SessaConfig.from_pretrained(tmp_path)
    assert loaded.eos_token_id is None and loaded.pad_token_id == 257


# ----- loading in a process that has not imported sessa ------------------------------------------------------


def test_loading_needs_import_sessa_and_import_sessa_loads_no_peft(saved):
    """transformers knows model type "sessa" only after `import sessa` (no auto_map: that would run code
    from the folder); the failure names the model type, and `import sessa` fixes it. `import sessa` never
    imports PEFT (the LoRA defaults register lazily)."""
    code = textwrap.dedent(
        f"""
        import sys
        from transformers import AutoConfig, AutoModelForCausalLM
        try:
            AutoModelForCausalLM.from_pretrained({str(saved)!r})
        except ValueError as e:
            assert "model type `sessa`" in str(e), e
        else:
            raise AssertionError("loaded without import sessa")
        import sessa
        assert "peft" not in sys.modules
        assert AutoConfig.from_pretrained({str(saved)!r}).model_type == "sessa"
        print(type(AutoModelForCausalLM.from_pretrained({str(saved)!r})).__name__)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "SessaForCausalLM"
