"""The synthetic annotator in `rayalign.annotator`: Bradley-Terry preference labels drawn from the
gold-reward gap (`prefers_first`, including a numerically stable sigmoid), pair labelling per prompt
group (`label_group`) and its label-noise rate, and `gold_agreement`."""

import pyarrow as pa
import pytest

from rayalign.annotator import gold_agreement, label_group, prefers_first
from rayalign.config import LabelConfig


def test_bradley_terry_labels_follow_the_gold_gap():
    # σ((0.6 − 0.4)/0.1) = σ(2) = 0.8808: a draw below prefers a, above prefers b.
    assert prefers_first(0.6, 0.4, 0.1, u=0.88) and not prefers_first(0.6, 0.4, 0.1, u=0.89)
    assert prefers_first(0.6, 0.4, 0.0, u=0.99) and not prefers_first(0.4, 0.6, 0.0, u=0.0)
    assert prefers_first(0.5, 0.5, 0.0, u=0.49) and not prefers_first(0.5, 0.5, 0.0, u=0.51)


def test_bradley_terry_labels_survive_a_large_gap_over_a_small_temperature():
    # (g_a − g_b)/T = ±2/1e-4 = ±2e4: exp(2e4) overflows a float, so the sigmoid must not form it.
    # σ(2e4) = 1 − 1e-8686 rounds to 1, so any u < 1 prefers a; σ(−2e4) rounds to 0, so no u ≥ 0 does.
    assert prefers_first(1.0, -1.0, 1e-4, u=0.999) and prefers_first(1.0, -1.0, 1e-4, u=0.0)
    assert not prefers_first(-1.0, 1.0, 1e-4, u=0.0) and not prefers_first(-1.0, 1.0, 1e-4, u=0.999)


def _group(rewards, responses=None):
    n = len(rewards)
    return pa.table({"prompt_id": ["p"] * n, "prompt": ["x"] * n, "sample_idx": list(range(n)),
                     "response": responses or [f"r{i}" for i in range(n)], "reward": rewards})


def test_label_group_noiseless_picks_distinct_pairs():
    cfg = LabelConfig(pairs_per_prompt=10, temperature=0.0)
    table = label_group(_group([0.1, 0.9, -0.5, 0.3]), cfg, {"p": "heldout"})
    assert table.num_rows == 6  # all C(4, 2) pairs, capped at 10
    rows = table.to_pylist()
    assert all(r["chosen_gold"] > r["rejected_gold"] and r["split"] == "heldout" for r in rows)
    # Identical responses make no pair; the cap holds.
    assert label_group(_group([0.1, 0.9, 0.2], ["same", "same", "other"]), cfg, {"p": "train"}).num_rows == 2
    assert label_group(_group([0.1, 0.9, -0.5, 0.3]), LabelConfig(pairs_per_prompt=2), {"p": "train"}).num_rows == 2


def test_label_noise_flips_about_the_bradley_terry_share():
    # Gap 0.1 at T = 0.1: P(correct) = σ(1) = 0.731.
    cfg = LabelConfig(pairs_per_prompt=1, temperature=0.1)
    flips = 0
    for i in range(2000):
        group = _group([0.5, 0.4]).set_column(0, "prompt_id", pa.array([f"p{i}"] * 2))
        flips += label_group(group, cfg, {f"p{i}": "train"}).to_pylist()[0]["chosen_gold"] < 0.45
    assert flips / 2000 == pytest.approx(1 - 0.7311, abs=0.03)


def test_gold_agreement_skips_gold_ties():
    assert gold_agreement([2, 0, 1], [1, 1, 0], [0.5, 0.2, 0.3], [0.1, 0.1, 0.3]) == 0.5
