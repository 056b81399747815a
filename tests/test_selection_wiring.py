"""select_pairs and the training loss dispatch: the config choices reach the pure functions."""

import math
import warnings

import pytest
import torch

from rayalign.config import RunConfig, SelectConfig, TrainConfig, load_config
from rayalign.selection.pairs import select_pairs
from rayalign.training.preference import pair_losses


def rows(rewards, logps=None, tokens=10, prompt_id="p"):
    logps = logps or [-10.0] * len(rewards)
    return [{"prompt_id": prompt_id, "sample_idx": i, "reward": r, "sampler_logprob": lp, "num_tokens": tokens}
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


def test_rso_defaults_reject_most_candidates():
    # Default n = max(2, k // 4): 2 of 8 candidates (acceptance rate 1/4, not 1), 4 of 16, and at least 2.
    sel = select_pairs(rows([0.1 * i for i in range(8)]), SelectConfig(strategy="rso"))
    assert (sel.candidates, sel.accepted) == (8, 2) and len(sel.pairs) == 1  # tournament of 2: one match
    assert select_pairs(rows([0.1 * i for i in range(16)]), SelectConfig(strategy="rso")).accepted == 4
    assert select_pairs(rows([0.1 * i for i in range(5)]), SelectConfig(strategy="rso")).accepted == 2


def test_rso_accepting_every_candidate_is_warned_about():
    match = r"select\.rso_num_samples = 8 >= sample\.k = 8: RSO rejects no candidate"
    with pytest.warns(UserWarning, match=match):
        load_config("default", ["select.strategy=rso", "select.rso_num_samples=8"])  # the preset's k = 8
    with pytest.warns(UserWarning, match=r"select\.rso_num_samples = 2 \(the default.*\) >= sample\.k = 2"):
        RunConfig(sample={"k": 2}, select={"strategy": "rso"})  # the default n = max(2, 2 // 4) = 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RunConfig(sample={"k": 8}, select={"strategy": "rso"})                          # n = 2 < 8
        RunConfig(sample={"k": 8}, select={"strategy": "rs_dpo", "rso_num_samples": 8})  # RSO unused


def test_rso_pairs_a_random_permutation_of_the_accepted():
    # β → 0 accepts the top 6 of 8 in reward order, best first. Pairing in that order would always
    # put the best in pair 0 against the runner-up; over 400 prompts a random permutation puts it in
    # each of the 3 first-round pairs about 400/3 = 133 times (sd 9.4), against each of the other 5
    # accepted about 80 times (sd 8). The bounds are > 3 sd wide; the seeds are fixed, so no flakes.
    cfg = SelectConfig(strategy="rso", rso_num_samples=6, rso_beta=1e-9, rso_pairing="first_round")
    rewards = [0.1 * i for i in range(8)]  # best = 7; accepted = 7, 6, 5, 4, 3, 2
    best_pair, opponent = [0, 0, 0], {i: 0 for i in range(2, 7)}
    for p in range(400):
        sel = select_pairs(rows(rewards, prompt_id=f"p{p}"), cfg)
        assert sel.accepted == 6 and len(sel.pairs) == 3
        [(at, (_, rejected))] = [(n, pair) for n, pair in enumerate(sel.pairs) if pair[0] == 7]
        best_pair[at] += 1
        opponent[rejected] += 1
    assert all(100 <= c <= 166 for c in best_pair), best_pair
    assert all(50 <= c <= 110 for c in opponent.values()), opponent


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


# Δ_norm = (PC − RC) − (PR − RR) = [(−10 + 11) − (−12 + 11), (−4 + 4.5) − (−3 + 3.5)] = [2, 0].
@pytest.mark.parametrize("loss,expected", [
    # −log σ(0.1·Δ) = log(1 + e^(−0.2)) = log 1.818731 = 0.598139;  log(1 + e^0) = log 2 = 0.693147
    ("dpo", [0.5981388693, 0.6931471806]),
    # (Δ − 1/(2·0.1))² = (2 − 5)² = 9;  (0 − 5)² = 25
    ("ipo", [9.0, 25.0]),
    # max(0, 1 − (PC − PR)) − 0.1·PC: max(0, 1 − 2) + 1 = 1;  max(0, 1 − (−1)) + 0.4 = 2.4
    ("slic", [1.0, 2.4]),
    # max(0, 1 − 0.05·Δ) = 1 − 0.1 = 0.9;  1 − 0 = 1
    ("hinge_norm", [0.9, 1.0]),
])
def test_pair_losses_dispatches_to_the_configured_loss(loss, expected):
    got = pair_losses(TrainConfig(loss=loss), PC, PR, RC, RR, NC, NR)
    assert got.tolist() == pytest.approx(expected)


def test_ipo_token_mean_and_budget_regularizer():
    # The roles swapped (policy = RC, RR; reference = PC, PR), so the chosen log-prob falls below the
    # reference's and the budget bites. Per-token means: policy chosen RC/NC = [−2.2, −2.25], rejected
    # RR/NR = [−2.75, −1.75]; reference PC/NC = [−2, −2], PR/NR = [−3, −1.5].
    # Δ_norm = (−2.2 + 2) − (−2.75 + 3) = −0.45;  (−2.25 + 2) − (−1.75 + 1.5) = 0.
    # IPO (Δ − 5)² = 5.45² = 29.7025;  25.   (On summed log-probs Δ = −2, 0 it would be 49, 25.)
    # Budget on sums, λ·max(0, PC − RC − b) = 2·max(0, 1 − 0.5) = 1;  2·max(0, 0.5 − 0.5) = 0. Sum: 30.7025, 25.
    cfg = TrainConfig(loss="ipo", ipo_token_mean=True, budget_lambda=2.0, budget=0.5)
    assert pair_losses(cfg, RC, RR, PC, PR, NC, NR).tolist() == pytest.approx([30.7025, 25.0])


def test_slic_needs_no_reference():
    got = pair_losses(TrainConfig(loss="slic"), PC, PR, None, None, NC, NR)
    # max(0, 1 − (−10 + 12)) − 0.1·(−10) = 0 + 1 = 1;  max(0, 1 − (−4 + 3)) − 0.1·(−4) = 2 + 0.4 = 2.4
    assert got.tolist() == pytest.approx([1.0, 2.4])
