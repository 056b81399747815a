"""The Bradley-Terry reward-model loss (InstructGPT; RS-DPO's reward model)."""

import torch
import torch.nn.functional as F


def bradley_terry_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """Per-pair −log σ(r(x, y_w) − r(x, y_l)), shape [B]."""
    return -F.logsigmoid(chosen_rewards - rejected_rewards)
