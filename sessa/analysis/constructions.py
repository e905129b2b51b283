"""The paper's explicit constructions (docs/equations.md §5), built as real modules with chosen weights.

    uniform-routing Sessa   q_b = 0 => every feedback logit equal => alpha_fb[t, j] = 1/t; gamma constant.
                            Influence of f_0 on s_t: (gamma/t) prod_{j<t}(1 + gamma/j) = Theta(t^-(1-gamma)).
    uniform attention       q = 0 => alpha_fwd[t, j] = 1/(t+1): influence of v_0 on f_t = 1/(l+1).
    fixed-decay SSM         Mamba-style h_t = exp(dt A) h_{t-1} + dt B_t x_t, dt input-independent (no
                            "freeze time"): influence C (exp(dt A))^l dt B, exponential in l.
    selective retrieval     Sessa whose feedback keys mark one chosen token: every later row routes (almost)
                            all feedback mass to it, so its influence stays ~ gamma at any lag.
Each *_influence function returns the lag profile [max_lag + 1] (index = lag), averaged over `batch` random
inputs, measured through the real module and op (feedback_solve, SDPA), not from the closed forms.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sessa.analysis.influence import (
    lag_profile,
    mixer_attention_influence,
    mixer_feedback_influence,
    ssm_impulse_response,
)
from sessa.layers.attention import AttentionMixer
from sessa.layers.sessa import SessaMixer
from sessa.utils.checks import check_float, check_gamma_max, check_int


def _set_constant_gamma(mixer: SessaMixer, gamma: float) -> None:
    """gamma_t = gamma_max tanh(b + w . a) = gamma for every input: w = 0, b = atanh(gamma / gamma_max)."""
    nn.init.zeros_(mixer.gamma_proj.weight)
    mixer.gamma_bias.data.fill_(math.atanh(gamma / mixer.gamma_max))


def uniform_routing_sessa(
    gamma: float, d_model: int = 4, *, gamma_max: float = 0.999, impl: str = "auto", dtype=torch.float64
) -> SessaMixer:
    """A SessaMixer with q_b = 0 (all feedback logits equal, alpha_fb = 1/t) and constant gamma."""
    gamma = check_float("gamma", gamma, lo=0.0, hi=check_gamma_max(gamma_max), lo_open=True, hi_open=True)
    mixer = SessaMixer(d_model, 1, gamma_max=gamma_max, rope=False, impl=impl).to(dtype)
    with torch.no_grad():
        D = d_model
        mixer.fb_proj.weight[:D].zero_()  # the query half; keys stay random: routing ignores them
        mixer.fb_proj.bias[:D].zero_()
        _set_constant_gamma(mixer, gamma)
    return mixer


def uniform_routing_theory(gamma: float, max_lag: int) -> torch.Tensor:
    """Closed form of the influence of f_0 on s_t, t = 0..max_lag: s_t = (gamma/t) prod_{j=1}^{t-1}(1 + gamma/j)."""
    check_int("max_lag", max_lag, lo=1)
    t = torch.arange(1, max_lag + 1, dtype=torch.float64)
    partial = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 + gamma / t[:-1], 0)])
    return torch.cat([torch.ones(1, dtype=torch.float64), gamma / t * partial])


def _inputs(batch: int, T: int, d_model: int, seed: int, dtype) -> torch.Tensor:
    check_int("batch", batch, lo=1)
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, T, d_model, generator=g, dtype=torch.float64).to(dtype)


def uniform_routing_influence(
    gamma: float, max_lag: int, *, d_model: int = 4, batch: int = 1, seed: int = 0, impl: str = "auto",
    gamma_max: float = 0.999,
) -> torch.Tensor:
    """Influence of f_0 on s_l, l = 0..max_lag, measured with feedback_solve on the real mixer: [max_lag + 1]."""
    check_int("max_lag", max_lag, lo=1)
    mixer = uniform_routing_sessa(gamma, d_model, gamma_max=gamma_max, impl=impl)
    a = _inputs(batch, max_lag + 1, d_model, seed, torch.float64)
    col = mixer_feedback_influence(mixer, a, source=0)
    return lag_profile(col, source=0).mean(0)


def uniform_attention_mixer(d_model: int = 4, *, dtype=torch.float64) -> nn.Module:
    """The Transformer baseline's attention mixer with q = 0: alpha_fwd[t, j] = 1/(t+1) for j <= t."""
    check_int("d_model", d_model, lo=1)
    mixer = AttentionMixer(d_model, 1, rope=False).to(dtype)
    with torch.no_grad():
        mixer.q_proj.weight.zero_()
        mixer.q_proj.bias.zero_()
    return mixer


def uniform_attention_influence(max_lag: int, *, d_model: int = 4, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """alpha_fwd[l, 0] = influence of v_0 on f_l for l = 0..max_lag, through SDPA on the real mixer."""
    check_int("max_lag", max_lag, lo=1)
    mixer = uniform_attention_mixer(d_model)
    a = _inputs(batch, max_lag + 1, d_model, seed, torch.float64)
    col = mixer_attention_influence(mixer, a, source=0)[..., 0]
    return lag_profile(col, source=0).mean(0)


class FixedDecaySSM(nn.Module):
    """Mamba-style diagonal SSM with input-independent step: h_t = exp(dt A) h_{t-1} + dt x_t B_t^T, y_t = h_t C_t.

    x [B, T, P] -> y [B, T, P]; state h [P, N]; B_t = W_B x_t + b_B, C_t = W_C x_t + b_C (selective read/write),
    dt = softplus(dt_bias), A = -exp(A_log): the per-step decay exp(dt A) is the same at every step.
    """

    def __init__(self, d_model: int = 4, d_state: int = 4, decay: float = 0.99) -> None:
        super().__init__()
        check_int("d_model", d_model, lo=1)
        check_int("d_state", d_state, lo=1)
        check_float("decay", decay, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
        self.d_model, self.d_state = d_model, d_state
        self.B_proj = nn.Linear(d_model, d_state)
        self.C_proj = nn.Linear(d_model, d_state)
        self.dt_bias = nn.Parameter(torch.tensor(0.0))  # dt = softplus(0) = log 2
        # exp(dt A) = decay  <=>  A = log(decay) / dt
        self.A_log = nn.Parameter(torch.tensor(math.log(-math.log(decay) / math.log(2.0))))

    def step_log_decay(self, x: torch.Tensor) -> torch.Tensor:
        """log A_t = dt * A, the same for every position: [B, T, N]."""
        dt = F.softplus(self.dt_bias)
        return (-torch.exp(self.A_log) * dt).expand(*x.shape[:2], self.d_state).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Sequential scan (readable reference, O(T P N))."""
        dt = F.softplus(self.dt_bias)
        decay = torch.exp(-torch.exp(self.A_log) * dt)
        Bt, Ct = self.B_proj(x), self.C_proj(x)
        h = x.new_zeros(x.shape[0], self.d_model, self.d_state)
        ys = []
        for t in range(x.shape[1]):
            h = decay * h + dt * x[:, t, :, None] * Bt[:, t, None, :]
            ys.append((h * Ct[:, t, None, :]).sum(-1))
        return torch.stack(ys, 1)

    def influence(self, x: torch.Tensor, *, source: int) -> torch.Tensor:
        """dy_t/dx_source = C_t (prod A) dt B_source (times the identity over channels): [B, T]."""
        with torch.no_grad():
            dt = F.softplus(self.dt_bias)
            return ssm_impulse_response(self.step_log_decay(x), dt * self.B_proj(x), self.C_proj(x), source=source)


def fixed_decay_ssm(decay: float = 0.99, d_model: int = 4, d_state: int = 4, *, dtype=torch.float64) -> FixedDecaySSM:
    """FixedDecaySSM with constant B = C = 1/sqrt(N) (so the read/write overlap is 1 and only the decay shows)."""
    ssm = FixedDecaySSM(d_model, d_state, decay).to(dtype)
    with torch.no_grad():
        for proj in (ssm.B_proj, ssm.C_proj):
            proj.weight.zero_()
            proj.bias.fill_(1.0 / math.sqrt(d_state))
    return ssm


def fixed_decay_influence(
    max_lag: int, *, decay: float = 0.99, d_model: int = 4, batch: int = 1, seed: int = 0
) -> torch.Tensor:
    """Influence of x_0 on y_l of the fixed-decay SSM, l = 0..max_lag: dt * decay^l."""
    check_int("max_lag", max_lag, lo=1)
    ssm = fixed_decay_ssm(decay, d_model)
    x = _inputs(batch, max_lag + 1, d_model, seed, torch.float64)
    return lag_profile(ssm.influence(x, source=0), source=0).mean(0)


def selective_retrieval_sessa(
    gamma: float = 0.9, d_model: int = 4, *, sharpness: float = 30.0, gamma_max: float = 0.999,
    impl: str = "auto", dtype=torch.float64,
) -> SessaMixer:
    """A SessaMixer whose feedback attends to the token marked by a_bar[..., 0] = 1, with constant gamma.

    k_b = sharpness * sqrt(D) * a_bar[0] e_0 and q_b = e_0, so the logit (q_b . k_b)/sqrt(D) is `sharpness`
    on the marked token and 0 elsewhere: alpha_fb[t, marked] = e^s / (e^s + t - 1) ~ 1 while t << e^s.
    """
    gamma = check_float("gamma", gamma, lo=0.0, hi=check_gamma_max(gamma_max), lo_open=True, hi_open=True)
    check_float("sharpness", sharpness, lo=0.0, hi=80.0, lo_open=True)  # a logit: e^80 ~ 1e35
    check_int("d_model", d_model, lo=1)
    mixer = SessaMixer(d_model, 1, gamma_max=gamma_max, rope=False, impl=impl).to(dtype)
    D = d_model
    with torch.no_grad():
        mixer.fb_proj.weight.zero_()
        mixer.fb_proj.bias.zero_()
        mixer.fb_proj.bias[0] = 1.0  # q_b = e_0 for every token
        mixer.fb_proj.weight[D, 0] = sharpness * math.sqrt(D)  # k_b[0] = s sqrt(D) * marker
        _set_constant_gamma(mixer, gamma)
    return mixer


def retrieval_input(T: int, marked: int, d_model: int = 4, *, batch: int = 1, seed: int = 0, dtype=torch.float64):
    """Random a_bar [batch, T, D] whose channel 0 is the marker: 1 at position `marked`, 0 elsewhere."""
    check_int("T", T, lo=1)
    check_int("marked", marked, lo=0, hi=T - 1)
    a = _inputs(batch, T, d_model, seed, dtype)
    a[..., 0] = 0.0
    a[:, marked, 0] = 1.0
    return a


def selective_retrieval_influence(
    max_lag: int, *, gamma: float = 0.9, sharpness: float = 30.0, d_model: int = 4, batch: int = 1,
    seed: int = 0, impl: str = "auto",
) -> torch.Tensor:
    """Influence of the marked token's f on s_l, l = 0..max_lag (marked = position 0), via feedback_solve."""
    check_int("max_lag", max_lag, lo=1)
    mixer = selective_retrieval_sessa(gamma, d_model, sharpness=sharpness, impl=impl)
    a = retrieval_input(max_lag + 1, 0, d_model, batch=batch, seed=seed)
    return lag_profile(mixer_feedback_influence(mixer, a, source=0), source=0).mean(0)
