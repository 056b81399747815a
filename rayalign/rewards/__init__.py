"""Reward scorers used by the score and evaluate stages, each a Ray Data actor class."""

from rayalign.rewards.reward_model import RewardModelScorer
from rayalign.rewards.vader import VaderReward

__all__ = ["GOLD_REWARDS", "RewardModelScorer", "VaderReward", "scorer_for"]

# Rewards that stand in for ground truth: they judge evaluations and label synthetic preferences.
GOLD_REWARDS = {"vader": VaderReward}


def scorer_for(score_cfg, reward_model_path: str | None = None) -> tuple[type, dict]:
    """(actor class, constructor kwargs) for a ScoreConfig; reward_model_path overrides its path."""
    if score_cfg.reward == "vader":
        return VaderReward, {}
    return RewardModelScorer, {"model_path": reward_model_path or score_cfg.reward_model_path}
