"""VADER compound sentiment of the response: a rule-based gold reward in [-1, 1]."""

from __future__ import annotations

import pyarrow as pa

from rayalign.actors.runtime import set_torch_threads


def append_reward(batch: pa.Table, rewards: list[float], name: str) -> pa.Table:
    """Add the reward and reward_model columns to a batch."""
    batch = batch.append_column(pa.field("reward", pa.float64()), pa.array(rewards, pa.float64()))
    return batch.append_column(pa.field("reward_model", pa.string()), pa.array([name] * len(rewards), pa.string()))


class VaderReward:
    """Callable class for map_batches: reward = VADER compound score of `response`."""

    name = "vader"

    def __init__(self, torch_threads: int | None = None):
        set_torch_threads(torch_threads)
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.analyzer = SentimentIntensityAnalyzer()

    def score(self, responses: list[str]) -> list[float]:
        return [float(self.analyzer.polarity_scores(text)["compound"]) for text in responses]

    def __call__(self, batch: pa.Table) -> pa.Table:
        return append_reward(batch, self.score(batch.column("response").to_pylist()), self.name)
