"""transformers generate / pipeline on Sessa models: greedy = argmax loop, cache, sampling, left padding."""

import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import pipeline

from sessa.models.cache import SessaCache
from sessa.models.hf import SessaConfig, SessaForCausalLM
from sessa.tokenization import byte_tokenizer

TINY = dict(vocab_size=258, d_model=32, n_layers=2, n_heads=2, bos_token_id=256, eos_token_id=256, pad_token_id=257)
PROMPTS = ["hello there", "hi", "a longer prompt, here"]
NEW = 6


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(1)
    # eos is None so every run produces exactly NEW tokens and the comparisons cover all of them
    return SessaForCausalLM(SessaConfig(**{**TINY, "eos_token_id": None})).eval()


@torch.no_grad()
def argmax_loop(model: SessaForCausalLM, x: torch.Tensor, n: int) -> torch.Tensor:
    """The reference: full forward on the whole prefix, append the argmax, n times."""
    for _ in range(n):
        nxt = model(x, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
        x = torch.cat([x, nxt], dim=1)
    return x


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_generate_equals_argmax_loop(model, use_cache):
    x = torch.randint(0, 256, (2, 7))
    out = model.generate(x, max_new_tokens=NEW, do_sample=False, use_cache=use_cache)
    assert out.shape == (2, 7 + NEW)
    assert torch.equal(out, argmax_loop(model, x, NEW))


def test_cached_decoding_matches_full_forward(model):
    x = torch.randint(0, 256, (2, 10))
    full = model(x, use_cache=False).logits
    out = model(x[:, :6], use_cache=True)
    steps = [out.logits]
    for t in range(6, 10):  # one token at a time through the returned SessaCache
        out = model(x[:, t : t + 1], cache=out.cache, use_cache=True)
        steps.append(out.logits)
    assert isinstance(out.cache, SessaCache) and out.cache.seq_len == 10
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)


def test_generate_continues_a_user_cache(model):
    x = torch.randint(0, 256, (2, 5))
    cache = SessaCache(model.config.n_layers)
    first = model.generate(x, max_new_tokens=3, do_sample=False, cache=cache)
    assert cache.seq_len > 0  # filled in place
    more = model.generate(first, max_new_tokens=2, do_sample=False, cache=cache)
    assert torch.equal(more, argmax_loop(model, x, 5))


def test_sampling_is_reproducible_with_a_seed(model):
    x = torch.randint(0, 256, (2, 5))

    def sample(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return model.generate(x, max_new_tokens=12, do_sample=True, top_k=0, temperature=1.5)

    a, b, c = sample(123), sample(123), sample(124)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)  # 258-way draws: 24 coinciding by chance is vanishingly unlikely


def test_beam_search_reorders_the_cache(model):
    x = torch.randint(0, 256, (2, 5))
    kw = dict(max_new_tokens=4, num_beams=3, do_sample=False)
    assert torch.equal(model.generate(x, use_cache=True, **kw), model.generate(x, use_cache=False, **kw))


@pytest.mark.parametrize("use_cache", [True, False])
def test_left_padding_gives_unpadded_continuations(model, use_cache):
    tok = byte_tokenizer()
    tok.padding_side = "left"
    batch = tok(PROMPTS, return_tensors="pt", padding=True)
    assert not bool(batch["attention_mask"].all())  # really padded
    kw = dict(max_new_tokens=NEW, do_sample=False, use_cache=use_cache, output_scores=True,
              return_dict_in_generate=True)
    padded = model.generate(**batch, **kw)
    width = batch["input_ids"].shape[1]
    for i, prompt in enumerate(PROMPTS):
        single = tok(prompt, return_tensors="pt")
        alone = model.generate(**single, **kw)
        assert torch.equal(padded.sequences[i, width:], alone.sequences[0, single["input_ids"].shape[1]:])
        for s_pad, s_alone in zip(padded.scores, alone.scores, strict=True):
            torch.testing.assert_close(s_pad[i], s_alone[0], rtol=1e-4, atol=1e-5)


def test_text_generation_pipeline_returns_text(model):
    tok = byte_tokenizer()
    pipe = pipeline("text-generation", model=model, tokenizer=tok)
    out = pipe("hello", max_new_tokens=NEW, do_sample=False)
    text = out[0]["generated_text"]
    assert isinstance(text, str) and text.startswith("hello") and len(text.encode("utf-8")) > len("hello")
    # the pipeline's tokens are the model's greedy tokens, decoded
    ref = argmax_loop(model, torch.tensor([list(b"hello")]), NEW)[0].tolist()
    assert text == tok.decode(ref)
    batched = pipe(["hi", "hello there"], max_new_tokens=3, do_sample=False, batch_size=2)
    assert [len(r) for r in batched] == [1, 1]
    assert batched[1][0]["generated_text"].startswith("hello there")


def test_eos_stops_generation():
    torch.manual_seed(1)
    model = SessaForCausalLM(SessaConfig(**TINY)).eval()
    x = torch.randint(0, 256, (1, 5))
    first = argmax_loop(model, x, 1)[0, -1].item()
    # make that first greedy token the eos: generation must stop right after it
    model.generation_config.eos_token_id = first
    out = model.generate(x, max_new_tokens=NEW, do_sample=False)
    assert out.shape[1] == 6 and out[0, -1].item() == first


def test_core_imports_without_transformers():
    code = textwrap.dedent(
        """
        import sys
        from importlib.abc import MetaPathFinder

        class Hide(MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "transformers" or name.startswith("transformers."):
                    raise ImportError("transformers hidden for this test")
                return None

        sys.meta_path.insert(0, Hide())
        import torch
        import sessa, sessa.ops, sessa.layers
        from sessa.models import SessaLM, SessaConfig
        assert "transformers" not in sys.modules
        assert not hasattr(sessa.models, "hf")
        lm = SessaLM(SessaConfig(vocab_size=16, d_model=8, n_layers=1))
        print(tuple(lm(torch.zeros(1, 3, dtype=torch.long)).logits.shape))
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "(1, 3, 16)"


def test_baseline_mixer_without_cache_generates():
    # the attention baseline has no cache: generate must fall back to full forwards, not break
    torch.manual_seed(2)
    model = SessaForCausalLM(SessaConfig(**{**TINY, "mixer": "attention", "eos_token_id": None})).eval()
    assert not model.model.supports_cache and model(torch.randint(0, 256, (1, 4))).cache is None
    x = torch.randint(0, 256, (2, 5))
    assert torch.equal(model.generate(x, max_new_tokens=4, do_sample=False), argmax_loop(model, x, 4))
    with pytest.raises(ValueError, match="cache"):
        model.generate(x, max_new_tokens=2, use_cache=True)


@pytest.mark.parametrize(
    "variant",
    [dict(n_heads=4, n_kv_heads=2), dict(n_heads=1), dict(rope=False), dict(feedback=False), dict(impl="naive")],
)
def test_variants_cache_generate_and_left_padding(variant):
    torch.manual_seed(3)
    model = SessaForCausalLM(SessaConfig(**{**TINY, "eos_token_id": None, **variant})).eval()
    x = torch.randint(0, 256, (2, 6))
    assert torch.equal(model.generate(x, max_new_tokens=4, do_sample=False), argmax_loop(model, x, 4))
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, :3] = 0  # row 1 is left-padded: only its last 3 tokens are real
    padded = model.generate(x, attention_mask=mask, max_new_tokens=4, do_sample=False)
    assert torch.equal(padded[1, 6:], argmax_loop(model, x[1:, 3:], 4)[0, 3:])


def test_stop_strings_with_the_tokenizer():
    """generate(stop_strings=..., tokenizer=tok) stops right after the first occurrence of the string."""
    tok = byte_tokenizer()
    torch.manual_seed(3)
    model = SessaForCausalLM(SessaConfig(**{**TINY, "eos_token_id": None})).eval()
    letters = [i for i in range(len(tok)) if not ord("a") <= i <= ord("z")]  # only a-z: readable text
    prompt = tok(["hello"], return_tensors="pt")
    full = model.generate(**prompt, max_new_tokens=20, do_sample=False, suppress_tokens=letters)
    text = tok.decode(full[0, 5:])
    assert len(text) == 20
    stop = text[6:8]
    end = text.index(stop) + len(stop)
    out = model.generate(**prompt, max_new_tokens=20, do_sample=False, suppress_tokens=letters,
                         stop_strings=[stop], tokenizer=tok)
    assert tok.decode(out[0, 5:]) == text[:end]
    with pytest.raises(TypeError, match="tokenizer"):  # the forward itself still rejects it
        model(prompt["input_ids"], tokenizer=tok)


def test_generate_refuses_to_run_past_max_seq_len():
    model = SessaForCausalLM(SessaConfig(**{**TINY, "eos_token_id": None, "max_seq_len": 8})).eval()
    x = torch.randint(0, 256, (1, 5))
    assert model.generate(x, max_new_tokens=3, do_sample=False).shape == (1, 8)  # exactly the limit
    with pytest.raises(ValueError, match=r"prompt length 5 with max_new_tokens 21 exceeds the model's "
                                         r"max_seq_len = 8.*max_new_tokens=3"):
        model.generate(x, max_new_tokens=21)
    with pytest.raises(ValueError, match="max_length 9 exceeds the model's max_seq_len = 8"):
        model.generate(x, max_length=9)
    with pytest.raises(ValueError, match="max_seq_len = 8.*a shorter prompt"):
        model.generate(torch.randint(0, 256, (1, 9)), max_new_tokens=1)
    # the default length (transformers reads max_position_embeddings = max_seq_len) stays within it
    with pytest.warns(UserWarning, match="max_length"):
        assert model.generate(x, do_sample=False).shape == (1, 8)
