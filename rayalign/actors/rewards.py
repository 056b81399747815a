"""Reward scorers used by the score and evaluate stages, each a Ray Data actor class."""

from rayalign.actors.reward_model import RewardModelScorer
from rayalign.actors.vader import VaderReward

__all__ = ["GOLD_REWARDS", "RewardModelScorer", "VaderReward", "gold_scorer", "scorer_for"]

# Rewards that stand in for ground truth: they judge evaluations and label synthetic preferences.
GOLD_REWARDS = {"vader": VaderReward}


def gold_scorer(evaluate_cfg, trust_remote_code: bool = False) -> tuple[type, dict]:
    """(actor class, constructor kwargs) of the reward that judges an evaluation (evaluate.gold_reward)."""
    if evaluate_cfg.gold_reward == "reward_model":
        return RewardModelScorer, {"model_path": evaluate_cfg.gold_reward_model_path,
                                   "trust_remote_code": trust_remote_code}
    return GOLD_REWARDS[evaluate_cfg.gold_reward], {}


def scorer_for(score_cfg, reward_model_path: str, trust_remote_code: bool = False) -> tuple[type, dict]:
    """(actor class, constructor kwargs) for a ScoreConfig; reward_model_path is the checkpoint a
    reward_model scorer loads (score.reward_model_path or the trained one)."""
    if score_cfg.reward == "vader":
        return VaderReward, {}
    return RewardModelScorer, {"model_path": reward_model_path, "trust_remote_code": trust_remote_code}
