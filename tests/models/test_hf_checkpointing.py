"""transformers activation (gradient) checkpointing: per block, the same loss and gradients as the plain run."""

import pytest
import torch
from torch.utils.checkpoint import checkpoint

import sessa  # noqa: F401  (registers the Auto classes)
from sessa.models.hf import SessaConfig, SessaForCausalLM

TINY = dict(vocab_size=258, d_model=32, n_layers=3, n_heads=2, chunk_size=4)


def _loss_and_grads(model, ids, mask):
    model.zero_grad(set_to_none=True)
    labels = ids.masked_fill(mask == 0, -100)
    loss = model(ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing_.*` is deprecated:FutureWarning")
@pytest.mark.parametrize("kwargs", [{}, {"gradient_checkpointing_kwargs": {"use_reentrant": True}}])
def test_gradient_checkpointing_gives_the_plain_gradients(kwargs):
    torch.manual_seed(0)
    model = SessaForCausalLM(SessaConfig(**TINY)).double().train()
    ids = torch.randint(0, 256, (2, 11))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0  # a right-padded row
    loss0, grads0 = _loss_and_grads(model, ids, mask)

    calls = []
    model.gradient_checkpointing_enable(**kwargs)
    assert model.is_activation_checkpointing and model.model.gradient_checkpointing
    func = model.model._gradient_checkpointing_func

    def counting(fn, *args, **kw):
        calls.append(type(fn.func).__name__)
        return func(fn, *args, **kw)

    model.model._gradient_checkpointing_func = counting
    loss1, grads1 = _loss_and_grads(model, ids, mask)
    assert calls == ["GatedBlock"] * TINY["n_layers"]  # one checkpoint per block
    torch.testing.assert_close(loss1, loss0, rtol=0, atol=1e-12)
    assert grads1.keys() == grads0.keys()
    for name in grads0:
        torch.testing.assert_close(grads1[name], grads0[name], rtol=1e-10, atol=1e-12, msg=name)

    # no checkpointing in eval mode or without grad; disable switches it off
    calls.clear()
    with torch.no_grad():
        model(ids)
    model.eval()
    model(ids)
    assert calls == []
    model.gradient_checkpointing_disable()
    model.train()
    model(ids, labels=ids).loss.backward()
    assert calls == [] and not model.model.gradient_checkpointing


def test_gradient_checkpointing_every_n_layers():
    model = SessaForCausalLM(SessaConfig(**TINY)).train()
    calls = []
    model.activation_checkpointing_enable(every_n_layers=2)

    def counting(fn, *args):
        calls.append(fn.func)
        return checkpoint(fn, *args, use_reentrant=False)

    model.model._gradient_checkpointing_func = counting
    model(torch.randint(0, 256, (1, 6)), labels=torch.randint(0, 256, (1, 6))).loss.backward()
    assert calls == [model.model.layers[0], model.model.layers[2]]
    with pytest.raises(ValueError, match="every_n_layers"):
        model.activation_checkpointing_enable(every_n_layers=0)


def test_gradient_checkpointing_with_a_cache_runs_unchecked():
    """A forward that updates a cache is not recomputed (it would update the cache twice)."""
    torch.manual_seed(0)
    model = SessaForCausalLM(SessaConfig(**TINY)).double().train()
    ids = torch.randint(0, 256, (1, 7))
    ref = model(ids, use_cache=True).logits
    model.activation_checkpointing_enable()
    out = model(ids, use_cache=True)
    torch.testing.assert_close(out.logits, ref, rtol=0, atol=0)
    assert out.cache.seq_len == 7


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")
def test_trainer_with_gradient_checkpointing(tmp_path):
    """TrainingArguments(gradient_checkpointing=True) trains: the same first-step loss and weights as without."""
    pytest.importorskip("accelerate")
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(0)
    data = [{"input_ids": torch.randint(0, 256, (12,))} for _ in range(4)]
    for item in data:
        item["labels"] = item["input_ids"].clone()
    results = []
    for gc in (False, True):
        torch.manual_seed(0)
        model = SessaForCausalLM(SessaConfig(**TINY))
        args = TrainingArguments(output_dir=str(tmp_path / str(gc)), per_device_train_batch_size=2, max_steps=2,
                                 gradient_checkpointing=gc, report_to=[], use_cpu=True, save_strategy="no",
                                 logging_steps=1, learning_rate=1e-2, seed=0, disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=data)
        trainer.train()
        assert model.model.gradient_checkpointing is gc
        results.append(({k: v.clone() for k, v in model.state_dict().items()},
                        [row["loss"] for row in trainer.state.log_history if "loss" in row]))
    (w0, l0), (w1, l1) = results
    assert len(l0) == 2 and l0 == pytest.approx(l1, rel=1e-5)
    for name in w0:
        torch.testing.assert_close(w1[name], w0[name], rtol=1e-5, atol=1e-6, msg=name)
