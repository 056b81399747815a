"""select_pairs and the training loss dispatch: the config choices reach the pure functions."""

import math

import pytest
import torch

from rayalign.config import SelectConfig, TrainConfig
from rayalign.losses import budget_regularizer, dpo_loss, hinge_norm_loss, ipo_loss, slic_loss
from rayalign.selection.pairs import select_pairs
from rayalign.training.preference import pair_losses


def rows(rewards, logps=None, tokens=10):
    logps = logps or [-10.0] * len(rewards)
    return [{"prompt_id": "p", "sample_idx": i, "reward": r, "sampler_logprob": lp, "num_tokens": tokens}
            for i, (r, lp) in enumerate(zip(rewards, logps))]


def test_perplexity_filter_runs_before_the_strategy():
    # ppl = exp(−logp / tokens): exp(1) = 2.72, exp(4) = 54.6, exp(0.5) = 1.65. max 10 drops candidate 1,
    # so best-vs-worst picks 0 (0.9) over 2 (−0.5) instead of over 1 (−0.9).
    candidates = rows([0.9, -0.9, -0.5], logps=[-10.0, -40.0, -5.0])
    assert select_pairs(candidates, SelectConfig(strategy="best_vs_worst")).pairs == [(0, 1)]
    filtered = select_pairs(candidates, SelectConfig(strategy="best_vs_worst", max_perplexity=10))
    assert filtered.pairs == [(0, 2)] and (filtered.candidates, filtered.kept) == (3, 2)


def test_rso_with_tiny_beta_accepts_the_top_n_and_pairs_them():
    # β → 0: round 1 accepts only the max (0.9, index 1); round 2 only the next (0.5, index 2).
    sel = select_pairs(rows([0.1, 0.9, 0.5, -0.2]), SelectConfig(strategy="rso", rso_num_samples=2, rso_beta=1e-9))
    assert sel.accepted == 2 and sel.pairs == [(1, 2)]


def test_rso_is_reproducible_per_prompt():
    cfg = SelectConfig(strategy="rso", rso_num_samples=4, rso_beta=0.5, seed=3)
    candidates = rows([0.1 * i for i in range(12)])
    assert select_pairs(candidates, cfg).pairs == select_pairs(candidates, cfg).pairs


def test_pairwise_ranking_with_the_reward_judge():
    # Ranking by σ(r_a − r_b) > ½ is ranking by reward: [2 (0.7), 0 (0.2), 1 (−0.4)] → pair (2, 1).
    sel = select_pairs(rows([0.2, -0.4, 0.7]), SelectConfig(strategy="pairwise_ranking"))
    assert sel.pairs == [(2, 1)]
    assert 0 < sel.comparisons <= 3 * math.ceil(math.log2(3)) + 1


def test_pairwise_ranking_gives_no_pair_when_all_tie():
    assert select_pairs(rows([0.3, 0.3, 0.3]), SelectConfig(strategy="pairwise_ranking")).pairs == []


def t(*v):
    return torch.tensor(v, dtype=torch.float64)


PC, PR, RC, RR, NC, NR = t(-10.0, -4.0), t(-12.0, -3.0), t(-11.0, -4.5), t(-11.0, -3.5), t(5.0, 2.0), t(4.0, 2.0)


@pytest.mark.parametrize("loss,expected", [
    ("dpo", dpo_loss(PC, PR, RC, RR, 0.1)),
    ("ipo", ipo_loss(PC, PR, RC, RR, 0.1)),
    ("slic", slic_loss(PC, PR, PC, delta=1.0, lam=0.1)),
    ("hinge_norm", hinge_norm_loss(PC, PR, RC, RR, 0.05)),
])
def test_pair_losses_dispatches_to_the_configured_loss(loss, expected):
    got = pair_losses(TrainConfig(loss=loss), PC, PR, RC, RR, NC, NR)
    assert torch.allclose(got, expected)


def test_ipo_token_mean_and_budget_regularizer():
    cfg = TrainConfig(loss="ipo", ipo_token_mean=True, budget_lambda=2.0, budget=0.5)
    expected = ipo_loss(PC / NC, PR / NR, RC / NC, RR / NR, 0.1) + budget_regularizer(PC, RC, budget=0.5, lam=2.0)
    assert torch.allclose(pair_losses(cfg, PC, PR, RC, RR, NC, NR), expected)


def test_slic_needs_no_reference():
    got = pair_losses(TrainConfig(loss="slic"), PC, PR, None, None, NC, NR)
    # max(0, 1 − (−10 + 12)) − 0.1·(−10) = 0 + 1 = 1;  max(0, 1 − (−4 + 3)) − 0.1·(−4) = 2 + 0.4 = 2.4
    assert got.tolist() == pytest.approx([1.0, 2.4])
