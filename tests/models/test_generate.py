"""SessaLM with a cache, and `sessa.generation.generate` / `sessa generate`."""

import pytest
import torch

from sessa.cli import main
from sessa.generation import generate, sample_next
from sessa.models import SessaConfig, SessaLM
from sessa.models.cache import SessaCache

V = 48


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def make_model(**kw) -> SessaLM:
    cfg = dict(vocab_size=V, d_model=16, n_layers=2, n_heads=2, max_seq_len=128)
    cfg.update(kw)
    model = SessaLM(SessaConfig(**cfg))
    with torch.no_grad():  # larger logits so greedy choices are well separated
        model.model.embed_tokens.weight.normal_(0, 1.0)
    return model.eval()


@pytest.mark.parametrize("kw", [{}, {"n_heads": 4, "n_kv_heads": 2}, {"n_heads": 1, "rope": False}])
@pytest.mark.parametrize("splits", [(3, 10), (11, 12)])
def test_lm_prefill_prefill_decode_equals_full(kw, splits):
    model = make_model(**kw)
    ids = torch.randint(0, V, (2, 20))
    with torch.no_grad():
        full = model(ids).logits
        a, b = splits
        out = model(ids[:, :a], use_cache=True)
        parts = [out.logits, model(ids[:, a:b], cache=out.cache).logits]
        parts += [model(ids[:, t : t + 1], cache=out.cache).logits for t in range(b, 20)]
    assert isinstance(out.cache, SessaCache) and out.cache.seq_len == 20 and out.cache.batch_size == 2
    assert rel_err(torch.cat(parts, 1), full) <= 1e-5


def test_greedy_with_cache_equals_full_recompute():
    model = make_model()
    prompt = torch.randint(0, V, (2, 7))
    fast = generate(model, prompt, max_new_tokens=12)
    slow = generate(model, prompt, max_new_tokens=12, use_cache=False)
    assert fast.new_ids.shape == (2, 12)
    assert torch.equal(fast.new_ids, slow.new_ids)
    ids = prompt  # and both equal a hand-written argmax loop
    for _ in range(12):
        with torch.no_grad():
            ids = torch.cat([ids, model(ids).logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(ids[:, 7:], fast.new_ids)
    assert fast.tokens_per_s > 0 and fast.n_new_tokens == 12


def test_left_padded_generation_equals_each_prompt_alone():
    model = make_model()
    prompts = [torch.randint(0, V, (L,)) for L in (9, 3)]
    ids = torch.zeros(2, 9, dtype=torch.long)
    mask = torch.zeros(2, 9, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, 9 - len(p) :], mask[i, 9 - len(p) :] = p, 1
    batch = generate(model, ids, attention_mask=mask, max_new_tokens=8).new_ids
    assert torch.equal(batch, generate(model, ids, attention_mask=mask, max_new_tokens=8, use_cache=False).new_ids)
    for i, p in enumerate(prompts):
        assert torch.equal(batch[i], generate(model, p[None], max_new_tokens=8).new_ids[0])


def test_stop_token_and_padding_of_finished_rows():
    model = make_model()
    prompt = torch.randint(0, V, (2, 5))
    free = generate(model, prompt, max_new_tokens=6).new_ids
    eos = int(free[0, 1])
    out = generate(model, prompt, max_new_tokens=6, eos_token_id=eos, pad_token_id=V - 1).new_ids
    for row in range(2):  # each row: the free run up to its first eos, then padding
        hits = (free[row] == eos).nonzero()
        stop = int(hits[0]) if len(hits) else 6
        assert torch.equal(out[row, : stop + 1], free[row, : stop + 1])
        assert (out[row, stop + 1 :] == V - 1).all()
    stop0 = int((free[0] == eos).nonzero()[0])
    single = generate(model, prompt[:1], max_new_tokens=6, eos_token_id=[eos, V - 2]).new_ids
    assert single.shape[1] == stop0 + 1  # every row finished: generation stops early


def test_seeded_sampling_is_reproducible_and_streamed():
    model = make_model()
    with torch.no_grad():  # a flat next-token distribution, so different seeds differ
        model.model.embed_tokens.weight.mul_(0.1)
    prompt = torch.randint(0, V, (1, 4))
    seen = []
    a = generate(model, prompt, max_new_tokens=10, do_sample=True, temperature=1.5, seed=7, streamer=seen.append)
    b = generate(model, prompt, max_new_tokens=10, do_sample=True, temperature=1.5, seed=7)
    c = generate(model, prompt, max_new_tokens=10, do_sample=True, temperature=1.5, seed=8)
    assert torch.equal(a.new_ids, b.new_ids) and not torch.equal(a.new_ids, c.new_ids)
    assert torch.equal(torch.stack(seen, 1), a.new_ids)
    greedy = generate(model, prompt, max_new_tokens=10).new_ids
    assert torch.equal(generate(model, prompt, max_new_tokens=10, do_sample=True, top_k=1, seed=1).new_ids, greedy)
    assert torch.equal(generate(model, prompt, max_new_tokens=10, do_sample=True, top_p=1e-6, seed=1).new_ids, greedy)

    class Streamer:
        def __init__(self):
            self.tokens, self.ended = [], False

        def put(self, t):
            self.tokens.append(t)

        def end(self):
            self.ended = True

    s = Streamer()
    generate(model, prompt, max_new_tokens=3, streamer=s)
    assert len(s.tokens) == 3 and s.ended


def test_top_k_and_top_p_restrict_the_support():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).expand(4000, 4)
    g = torch.Generator().manual_seed(0)
    k2 = sample_next(logits, do_sample=True, top_k=2, generator=g)
    assert set(k2.tolist()) == {0, 1}
    p = sample_next(logits, do_sample=True, top_p=0.7, generator=g)  # 0.5 < 0.7 <= 0.8: keep two tokens
    assert set(p.tolist()) == {0, 1}
    assert abs((p == 0).float().mean().item() - 0.625) < 0.05  # renormalised 0.5 / 0.8
    hot = sample_next(logits, do_sample=True, temperature=100.0, generator=g)
    assert set(hot.tolist()) == {0, 1, 2, 3}


def test_generate_and_lm_validation():
    model = make_model()
    ids = torch.randint(0, V, (1, 4))
    bad = [
        (dict(max_new_tokens=0), ValueError, "max_new_tokens"),
        (dict(max_new_tokens=200), ValueError, "max_seq_len"),
        (dict(max_new_tokens=2, temperature=0.0), ValueError, "temperature"),
        (dict(max_new_tokens=2, top_k=0), ValueError, "top_k"),
        (dict(max_new_tokens=2, top_p=1.5), ValueError, "top_p"),
        (dict(max_new_tokens=2, eos_token_id=V), ValueError, "eos_token_id"),
        (dict(max_new_tokens=2, seed=-1), ValueError, "seed"),
        (dict(max_new_tokens=2, attention_mask=torch.ones(1, 3)), ValueError, "attention_mask"),
    ]
    for kw, err, match in bad:
        with pytest.raises(err, match=match):
            generate(model, ids, **kw)
    with pytest.raises(ValueError, match="input_ids"):
        generate(model, ids[:, :0], max_new_tokens=1)
    out = model(ids, use_cache=True)
    with pytest.raises(ValueError, match="batch size"):
        model(torch.randint(0, V, (2, 1)), cache=out.cache)
    with pytest.raises(ValueError, match="layers"):
        model(ids, cache=SessaCache(3))
    with pytest.raises(TypeError, match="SessaCache"):
        model(ids, cache=out.cache.layers)
    with pytest.raises(ValueError, match=r"\[B, past \+ T\]"):
        model(ids[:, :1], cache=out.cache, attention_mask=torch.ones(1, 1, dtype=torch.long))


def test_cli_generate_random_init_and_checkpoint(tmp_path, capsys):
    args = ["generate", "--random-init", "--prompt", "ab", "--max-new-tokens", "5", "--sample", "--seed", "3"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert out.startswith("ab") and "tokens/s" in err
    assert main(args) == 0
    assert capsys.readouterr()[0] == out  # seeded: the same text again
    from sessa.train.checkpoint import save_model

    save_model(make_model(vocab_size=258), str(tmp_path / "m"))
    assert main(["generate", "--checkpoint", str(tmp_path / "m"), "--prompt", "x", "--max-new-tokens", "3"]) == 0
    assert capsys.readouterr()[0].startswith("x")
    assert main(["generate", "--random-init", "--prompt", "x", "--top-p", "0"]) == 2
    assert "top_p" in capsys.readouterr()[1]


def test_cli_sampling_flags_imply_sampling(capsys):
    """--temperature (or --top-k / --top-p) without --sample samples, as in transformers; never ignored."""
    base = ["generate", "--random-init", "--prompt", "ab", "--max-new-tokens", "12", "--no-stop"]
    assert main(base) == 0
    greedy = capsys.readouterr()[0]
    texts = []
    for seed in ("0", "1"):
        assert main([*base, "--temperature", "5.0", "--seed", seed]) == 0
        out, err = capsys.readouterr()
        assert "implied by --temperature" in err
        texts.append(out)
    assert texts[0] != texts[1]  # the seed matters: the flag took effect (it was greedy before)
    assert greedy not in texts
    assert main([*base, "--temperature", "5.0", "--seed", "0"]) == 0
    assert capsys.readouterr()[0] == texts[0]  # and it is reproducible


def test_cli_eos_id_outside_vocab_is_refused(capsys):
    assert main(["generate", "--random-init", "--prompt", "x", "--eos-id", "258"]) == 2
    assert "--eos-id must lie in [0, vocab_size = 258)" in capsys.readouterr()[1]


def test_cli_generate_with_a_mixer_without_cache(tmp_path, capsys):
    """A baseline that cannot continue a cache (here attention) still generates: the prefix is recomputed."""
    from sessa.train.checkpoint import save_model

    save_model(SessaLM(SessaConfig(vocab_size=258, d_model=16, n_layers=1, mixer="attention")), tmp_path / "a")
    assert main(["generate", "--checkpoint", str(tmp_path / "a"), "--prompt", "x", "--max-new-tokens", "3"]) == 0
    assert capsys.readouterr()[0].startswith("x")
