"""The README's Python example: the layer, the LM, the op and cached generation (runs in a few seconds)."""

import torch

import sessa
from sessa.generation import generate

torch.manual_seed(0)
layer = sessa.SessaLayer(d_model=256, n_heads=4, n_kv_heads=2)  # the paper's layer (GQA, RoPE)
y = layer(torch.randn(2, 1024, 256))  # [B, T, D] -> [B, T, D]

model = sessa.SessaLM(sessa.SessaConfig(vocab_size=258, d_model=256, n_layers=4, n_heads=4))
ids = torch.randint(0, 258, (2, 128))
out = model(ids, labels=ids)  # out.logits [2, 128, 258], out.loss
out.loss.backward()

q, k, f = (torch.randn(1, 4096, 1, 64) for _ in range(3))
s = sessa.feedback_solve(q, k, f, gamma=torch.full((1, 4096, 1), 0.9))  # the op alone, [B, T, H, D]

gen = generate(model.eval(), ids[:1, :16], max_new_tokens=32, do_sample=True, top_p=0.9, seed=0)
print(f"layer {tuple(y.shape)}, loss {out.loss.item():.3f}, solve {tuple(s.shape)}, "
      f"generated {tuple(gen.new_ids.shape)} at {gen.tokens_per_s:.0f} tokens/s")
