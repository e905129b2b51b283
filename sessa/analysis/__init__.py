"""Theory tools: influence Jacobians, end-to-end block Jacobians, the paper's constructions and tail fits."""

from sessa.analysis.constructions import (
    FixedDecaySSM,
    fixed_decay_influence,
    fixed_decay_ssm,
    retrieval_input,
    selective_retrieval_influence,
    selective_retrieval_sessa,
    uniform_attention_influence,
    uniform_attention_mixer,
    uniform_routing_influence,
    uniform_routing_sessa,
    uniform_routing_theory,
)
from sessa.analysis.fit import FitResult, compare_tails, fit_tail, geometric_lags
from sessa.analysis.influence import (
    attention_influence,
    attention_qk,
    feedback_influence,
    lag_profile,
    mamba2_impulse_response,
    mixer_attention_influence,
    mixer_feedback_influence,
    ssm_impulse_response,
)
from sessa.analysis.jacobians import (
    embed_inputs,
    hidden_stack,
    jacobian_norms,
    jacobian_norms_jvp,
    transport_scores,
)

__all__ = [
    "FitResult", "FixedDecaySSM", "attention_influence", "attention_qk", "compare_tails", "embed_inputs",
    "feedback_influence", "fit_tail", "fixed_decay_influence", "fixed_decay_ssm", "geometric_lags",
    "hidden_stack", "jacobian_norms", "jacobian_norms_jvp", "lag_profile", "mamba2_impulse_response",
    "mixer_attention_influence",
    "mixer_feedback_influence", "retrieval_input", "selective_retrieval_influence", "selective_retrieval_sessa",
    "ssm_impulse_response", "transport_scores", "uniform_attention_influence", "uniform_attention_mixer",
    "uniform_routing_influence", "uniform_routing_sessa", "uniform_routing_theory",
]
