"""Reward scorers used by the score and evaluate stages, each a Ray Data actor class."""

from rayalign.rewards.reward_model import RewardModelScorer
from rayalign.rewards.vader import VaderReward

__all__ = ["RewardModelScorer", "VaderReward", "scorer_for"]


def scorer_for(score_cfg) -> tuple[type, dict]:
    """(actor class, constructor kwargs) for a ScoreConfig."""
    if score_cfg.reward == "vader":
        return VaderReward, {}
    return RewardModelScorer, {"model_path": score_cfg.reward_model_path}
