"""Preference and reward-model losses: pure torch functions over summed sequence log-probs or rewards."""

from rayalign.losses.bradley_terry import bradley_terry_loss
from rayalign.losses.budget import budget_regularizer
from rayalign.losses.dpo import dpo_loss
from rayalign.losses.hinge_norm import hinge_norm_loss
from rayalign.losses.ipo import ipo_loss
from rayalign.losses.slic import slic_loss

__all__ = ["bradley_terry_loss", "budget_regularizer", "dpo_loss", "hinge_norm_loss", "ipo_loss", "slic_loss"]
