"""The DPO loss (Rafailov et al. 2023), with optional label smoothing (conservative DPO)."""

import torch
import torch.nn.functional as F


def normalized_margin(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
) -> torch.Tensor:
    """Δ_norm = [log π(y_w) − log π_ref(y_w)] − [log π(y_l) − log π_ref(y_l)], per pair."""
    return (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Per-pair DPO loss −log σ(β·Δ_norm), shape [B].

    With label smoothing ε the preference label is assumed flipped with
    probability ε: (1 − ε)·(−log σ(βΔ)) + ε·(−log σ(−βΔ)).
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    logits = beta * normalized_margin(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    return -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)
