"""Budget-controlled regularisation (Chen et al. 2024, "Towards Improved Preference Optimization
Pipeline: from Data Generation to Budget-Controlled Regularization", arXiv:2411.05875)."""

import math

import torch


def budget_regularizer(
    policy_chosen: torch.Tensor,
    ref_chosen: torch.Tensor,
    budget: float = 0.0,
    lam: float = 1.0,
) -> torch.Tensor:
    """Per-pair penalty λ·max(0, log π_ref(y_w) − log π(y_w) − b), shape [B]; b = 0, λ = 1 by default.

    Added to a preference loss, it keeps the chosen response's log-likelihood from falling
    more than the budget b below the reference's: b = 0 is the strict NLL-style constraint,
    a larger b lets it drop "slightly". This exact form is our reading of the paper's
    abstract (Chen et al. 2024, budget-controlled regularisation), not a transcription of
    its equations.
    """
    if not (math.isfinite(budget) and budget >= 0):
        raise ValueError(f"budget must be a finite number >= 0, got {budget}")
    if not (math.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam (the regulariser weight) must be a finite number >= 0, got {lam}")
    return lam * torch.clamp(ref_chosen - policy_chosen - budget, min=0.0)
