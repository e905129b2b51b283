"""An independent float64 re-statement of the authors' layer (docs/equations.md §1-2), with THEIR parameter names.

Written directly from the spec, sharing no code with sessa: explicit attention, complex-number RoPE and a
token-by-token feedback recurrence. Used as the exactness oracle for SessaLayer + convert_reference_state_dict.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class RefMixer(nn.Module):
    def __init__(self, D: int, H: int, Hkv: int, gamma_max: float, rope: bool) -> None:
        super().__init__()
        self.D, self.H, self.Hkv, self.d, self.gamma_max, self.rope = D, H, Hkv, D // H, gamma_max, rope
        self.q_proj = nn.Linear(D, D)
        self.k_proj = nn.Linear(D, Hkv * self.d)
        self.v_proj = nn.Linear(D, Hkv * self.d)
        if H > 1:
            self.out_proj = nn.Linear(D, D, bias=False)
        self.proj_fb = nn.Linear(D, 2 * D)
        self.gamma_bias = nn.Parameter(torch.tensor(1.0))
        self.gamma_ctx = nn.Linear(D, 1, bias=False)
        self.register_buffer("rope_inv_freq", 10000.0 ** (-torch.arange(0, self.d, 2).double() / self.d))

    def _rope(self, x: torch.Tensor) -> torch.Tensor:  # x [T, heads, d]
        T = x.shape[0]
        z = torch.complex(x[..., 0::2], x[..., 1::2])
        ang = torch.arange(T, dtype=torch.float64)[:, None] * self.rope_inv_freq[None, :]
        z = z * torch.polar(torch.ones_like(ang), ang)[:, None, :]
        return torch.stack((z.real, z.imag), dim=-1).flatten(-2)

    def forward(self, a: torch.Tensor) -> torch.Tensor:  # a [T, D], one sequence
        T, D, H, d = a.shape[0], self.D, self.H, self.d
        q = self.q_proj(a).view(T, H, d)
        k = self.k_proj(a).view(T, self.Hkv, d)
        v = self.v_proj(a).view(T, self.Hkv, d)
        if self.rope:
            q, k = self._rope(q), self._rope(k)
        f = torch.zeros(T, H, d, dtype=a.dtype)
        for h in range(H):
            kv = h // (H // self.Hkv)
            for t in range(T):
                w = torch.softmax(k[: t + 1, kv] @ q[t, h] / math.sqrt(d), dim=0)
                f[t, h] = w @ v[: t + 1, kv]
        f = f.reshape(T, D)
        if H > 1:
            f = self.out_proj(f)
        qb, kb = self.proj_fb(a)[:, :D], self.proj_fb(a)[:, D:]
        gamma = self.gamma_max * torch.tanh(self.gamma_bias + self.gamma_ctx(a)[:, 0])
        s = []
        for t in range(T):
            st = f[t]
            if t > 0:
                alpha = torch.softmax(kb[:t] @ qb[t] / math.sqrt(D), dim=0)
                st = st + gamma[t] * (alpha @ torch.stack(s))
            s.append(st)
        return torch.stack(s)


class RefLayer(nn.Module):
    def __init__(self, D: int, H: int = 1, Hkv: int | None = None, gamma_max: float = 0.999, rope: bool = True):
        super().__init__()
        self.ln = nn.LayerNorm(D, eps=1e-5)
        self.W_in = nn.Linear(D, 2 * D)
        self.W_out = nn.Linear(D, D)
        self.mixer = RefMixer(D, H, Hkv or H, gamma_max, rope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [B, T, D]
        out = []
        for xb in x:
            a, g = self.W_in(self.ln(xb)).chunk(2, dim=-1)
            a = 0.5 * a * (1.0 + torch.erf(a / math.sqrt(2.0)))  # exact GELU
            out.append(xb + self.W_out(self.mixer(a) * g))
        return torch.stack(out)
