"""Synthetic preference labels: a gold reward plays the annotator, with Bradley-Terry noise.

The classic offline setup (DPO paper's IMDb task; RS-DPO's reward model): pairs of sampled
responses are labelled by P(a ≻ b) = σ((g_a − g_b)/T), so the learned reward model can be
checked against the gold reward it was meant to recover.
"""

from __future__ import annotations

import itertools
import math
import random

import pyarrow as pa

from rayalign.config import LabelConfig
from rayalign.data.preferences import PREFERENCES
from rayalign.seeding import derived_seed

LABELS = PREFERENCES.append(pa.field("chosen_gold", pa.float64())).append(pa.field("rejected_gold", pa.float64()))


def prefers_first(gold_a: float, gold_b: float, temperature: float, u: float) -> bool:
    """Whether the annotator prefers a: u < σ((g_a − g_b)/T), u uniform in [0, 1).

    T = 0 is the noiseless annotator (ties decided by u)."""
    if temperature == 0:
        return gold_a > gold_b if gold_a != gold_b else u < 0.5
    return u < _sigmoid((gold_a - gold_b) / temperature)


def _sigmoid(x: float) -> float:
    # Split by sign so exp only sees x ≤ 0: a large gap over a small T must not overflow.
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def label_group(group: pa.Table, cfg: LabelConfig, splits: dict[str, str]) -> pa.Table:
    """Labelled pairs of one prompt's scored samples (columns prompt_id, prompt, sample_idx,
    response, reward): up to cfg.pairs_per_prompt random pairs of distinct responses."""
    rows = sorted(group.select(["prompt_id", "prompt", "sample_idx", "response", "reward"]).to_pylist(),
                  key=lambda r: r["sample_idx"])
    if not rows:
        return LABELS.empty_table()
    pid = rows[0]["prompt_id"]
    rng = random.Random(derived_seed(cfg.seed, "label", pid))
    candidates = [(a, b) for a, b in itertools.combinations(rows, 2) if a["response"] != b["response"]]
    out = []
    for a, b in rng.sample(candidates, min(cfg.pairs_per_prompt, len(candidates))):
        if not prefers_first(a["reward"], b["reward"], cfg.temperature, rng.random()):
            a, b = b, a
        out.append({"prompt_id": pid, "prompt": a["prompt"], "split": splits[pid], "chosen": a["response"],
                    "rejected": b["response"], "chosen_gold": a["reward"], "rejected_gold": b["reward"]})
    return pa.Table.from_pylist(out, schema=LABELS)


def gold_agreement(chosen_scores, rejected_scores, chosen_gold, rejected_gold) -> float:
    """Share of pairs whose score order matches the gold order, over pairs the gold reward does not tie."""
    decided = [(c - r) * (g - h) for c, r, g, h in zip(chosen_scores, rejected_scores, chosen_gold, rejected_gold)
               if g != h]
    return sum(d > 0 for d in decided) / len(decided) if decided else float("nan")
