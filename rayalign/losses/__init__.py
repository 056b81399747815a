"""Preference losses: pure torch functions over summed sequence log-probs."""

from rayalign.losses.dpo import dpo_loss

__all__ = ["dpo_loss"]
