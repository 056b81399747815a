"""The RSO hinge-norm loss (Liu et al. 2024, "Statistical Rejection Sampling Improves Preference Optimization")."""

import math

import torch

from rayalign.losses.dpo import normalized_margin


def hinge_norm_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    gamma: float = 0.05,
) -> torch.Tensor:
    """Per-pair hinge-norm loss max(0, 1 − γ·Δ_norm), shape [B]; γ default 0.05 (RSO paper).

    SLiC's hinge applied to the reference-normalised margin: zero loss (and gradient) once
    Δ_norm ≥ 1/γ.
    """
    if not (math.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma must be a finite number > 0, got {gamma}")
    margin = normalized_margin(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    return torch.clamp(1.0 - gamma * margin, min=0.0)
