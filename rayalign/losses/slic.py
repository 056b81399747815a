"""The SLiC-HF loss (Zhao et al. 2023, "SLiC-HF: Sequence Likelihood Calibration with Human Feedback")."""

import math

import torch


def slic_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    target_logps: torch.Tensor,
    delta: float = 1.0,
    lam: float = 0.1,
) -> torch.Tensor:
    """Per-pair SLiC-HF loss max(0, δ − (log π(y_w) − log π(y_l))) − λ·log π(y_ref), shape [B].

    Defaults δ = 1.0, λ = 0.1. No reference model: the calibration term is a hinge on the raw
    policy margin, and the regulariser is the policy's log-likelihood of a target y_ref
    (the chosen response, or an SFT target) — pass policy_chosen again to use the chosen one.
    """
    if not (math.isfinite(delta) and delta > 0):
        raise ValueError(f"delta (the hinge margin) must be a finite number > 0, got {delta}")
    if not (math.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam (the regulariser weight) must be a finite number >= 0, got {lam}")
    hinge = torch.clamp(delta - (policy_chosen - policy_rejected), min=0.0)
    return hinge - lam * target_logps
