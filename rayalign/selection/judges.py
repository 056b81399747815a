"""Pairwise judges for the pairwise_ranking strategy: P(a ≻ b) for two scored candidates.

A judge is any object with `prob(a, b) -> float`, where a and b are candidate rows of the
score stage (prompt, response, reward, ...). Register new ones with `register_judge`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol


class PairwiseJudge(Protocol):
    def prob(self, a: dict[str, Any], b: dict[str, Any]) -> float:
        """P(a ≻ b) in [0, 1]."""


class BradleyTerryJudge:
    """Bradley-Terry on a score column of the candidates: P(a ≻ b) = σ(r_a − r_b)."""

    def __init__(self, column: str):
        self.column = column

    def prob(self, a: dict[str, Any], b: dict[str, Any]) -> float:
        return 1.0 / (1.0 + math.exp(b[self.column] - a[self.column]))


JUDGES: dict[str, Callable[[], PairwiseJudge]] = {
    # The score stage's reward.
    "reward": lambda: BradleyTerryJudge("reward"),
    # A separate reward model: the select stage scores every candidate once with it (an actor
    # pool, column `judge_reward`), so ranking k candidates costs k forward passes, not one per
    # comparison.
    "reward_model": lambda: BradleyTerryJudge("judge_reward"),
}


def register_judge(name: str, factory: Callable[[], PairwiseJudge]) -> None:
    """Make a judge selectable as select.judge=<name> (add the name to SelectConfig.judge too)."""
    JUDGES[name] = factory
