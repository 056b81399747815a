"""The IPO loss (Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human Preferences")."""

import math

import torch

from rayalign.losses.dpo import normalized_margin


def ipo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = 0.1,
) -> torch.Tensor:
    """Per-pair IPO loss (Δ_norm − 1/(2β))², shape [B]; β default 0.1.

    IPO regresses the normalised margin onto the target 1/(2β) instead of pushing it to
    infinity, so the gradient changes sign once Δ_norm exceeds the target. The formula is
    applied to whatever log-probs it is given: per-token means (the length-normalised variant
    common in implementations) or summed log-probs; β must suit that scale.
    """
    if not (math.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be a finite number > 0, got {beta}")
    margin = normalized_margin(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    return (margin - 1.0 / (2.0 * beta)) ** 2
