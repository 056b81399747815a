"""Pair-selection rules in `rayalign.selection`, each as a pure function on rewards: RS-DPO,
best-vs-worst, RSO rejection sampling, RSO first-round / tournament pairing, pairwise ranking with
reward and judge comparators, the perplexity filter, labelled random pairs, and the
`select_pairs` / `pairs_for_prompt` helpers that turn a prompt's scored samples into preference
rows. How the config reaches these functions is tested in tests/test_selection_wiring.py."""

import logging
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from rayalign.config import SelectConfig
from rayalign.selection import (
    CountingCompare,
    best_vs_worst,
    first_round_pairs,
    judge_compare,
    pairwise_ranking,
    perplexity_filter,
    random_pair,
    reward_compare,
    rs_dpo_pairs,
    rso_sample,
    tournament_pairs,
)
from rayalign.selection.pairs import pairs_for_prompt, select_pairs

NON_FINITE = [float("nan"), float("inf"), -float("inf")]


# --- RS-DPO ------------------------------------------------------------------------------

def test_rs_dpo_hand_computed():
    # τ = 0.25, η = 0.85: keep gaps above 0.25·ln(0.85/0.15) = 0.4337.
    # Gaps 0→1 and 3→1 are 0.7 (σ(2.8) = 0.943 > 0.85); 0→2, 3→2 are 0.4 (σ(1.6) = 0.832): dropped;
    # 2→1 is 0.3; 0↔3 tie.
    assert rs_dpo_pairs([0.9, 0.2, 0.5, 0.9], tau=0.25, eta=0.85) == [(0, 1), (3, 1)]


def test_rs_dpo_paper_default_scale():
    # τ = 1, η = 0.85 (paper): gap must exceed logit(0.85) = 1.7346.
    assert rs_dpo_pairs([2.0, 0.0, 0.3], tau=1.0, eta=0.85) == [(0, 1)]
    assert rs_dpo_pairs([1.7, 0.0], tau=1.0, eta=0.85) == []


@pytest.mark.parametrize("rewards", [[], [0.3], [0.5, 0.5, 0.5]])
def test_rs_dpo_no_pairs_without_contrast(rewards):
    assert rs_dpo_pairs(rewards, tau=0.25, eta=0.85) == []


rewards_lists = st.lists(st.floats(-5, 5, allow_nan=False), min_size=0, max_size=8)


@given(rewards_lists, st.floats(0.05, 2.0), st.floats(0.5, 0.99))
def test_rs_dpo_pairs_are_oriented_by_reward(rewards, tau, eta):
    for j, l in rs_dpo_pairs(rewards, tau, eta):
        assert rewards[j] > rewards[l]
        assert rewards[j] - rewards[l] > tau * math.log(eta / (1 - eta)) - 1e-9


@given(rewards_lists, st.floats(0.05, 2.0), st.floats(0.55, 0.95), st.floats(0.01, 0.5))
def test_rs_dpo_pairs_grow_as_thresholds_shrink(rewards, tau, eta, shrink):
    base = set(rs_dpo_pairs(rewards, tau, eta))
    assert base <= set(rs_dpo_pairs(rewards, tau * (1 - shrink), eta))
    assert base <= set(rs_dpo_pairs(rewards, tau, 0.5 + (eta - 0.5) * (1 - shrink)))


# --- best-vs-worst -----------------------------------------------------------------------

def test_best_vs_worst():
    assert best_vs_worst([0.1, 0.5, -0.3, 0.5]) == [(1, 2)]  # first maximum on ties
    assert best_vs_worst([0.2, 0.2]) == []
    assert best_vs_worst([0.7]) == []


@pytest.mark.parametrize("bad", NON_FINITE)
def test_non_finite_rewards_are_refused(bad):
    with pytest.raises(ValueError, match="finite"):
        rs_dpo_pairs([0.1, bad], tau=1.0, eta=0.85)
    with pytest.raises(ValueError, match="finite"):
        best_vs_worst([bad, 0.2])


# --- RSO sampling ------------------------------------------------------------------------

class ScriptedRng:
    """A random.Random stand-in: shuffle leaves the order alone, random() replays fixed draws."""

    def __init__(self, draws):
        self.draws = iter(draws)

    def shuffle(self, x):
        pass

    def random(self):
        return next(self.draws)


def test_rso_hand_computed_with_scripted_draws():
    # rewards [0, 1, 2], β = 1. Round 1: m = 2, acceptance probs exp(−2) = 0.1353, exp(−1) = 0.3679, 1.
    #   Draws 0.2, 0.3, 0.9: c0 0.2 ≥ 0.1353 rejected; c1 0.3 < 0.3679 accepted; c2 0.9 < 1 accepted.
    assert rso_sample([0.0, 1.0, 2.0], 2, 1.0, ScriptedRng([0.2, 0.3, 0.9])) == [1, 2]
    # Draws 0.5, 0.5, 0.99: only c2 accepted in round 1. Round 2: remaining [0, 1], m = 1 (recomputed),
    #   probs exp(−1) = 0.3679, 1; draw 0.3 < 0.3679 → c0 accepted; 2 accepted, so stop.
    assert rso_sample([0.0, 1.0, 2.0], 2, 1.0, ScriptedRng([0.5, 0.5, 0.99, 0.3])) == [2, 0]


def test_rso_small_beta_is_top_n_in_reward_order():
    # β = 1e−9: exp(−0.2/1e−9) = 0, so each round accepts only the remaining maximum:
    # round 1 m = 0.9 → 1; round 2 m = 0.7 → 3.
    assert rso_sample([0.1, 0.9, 0.5, 0.7], 2, 1e-9, random.Random(0)) == [1, 3]


def test_rso_edge_cases():
    rng = random.Random(0)
    assert rso_sample([], 3, 0.5, rng) == []
    assert rso_sample([0.3], 8, 0.5, rng) == [0]                              # k = 1
    assert sorted(rso_sample([0.3, -1.0, 2.0], 8, 0.5, rng)) == [0, 1, 2]     # n > k: all k
    equal = rso_sample([0.5] * 5, 3, 0.5, rng)                                # exp(0) = 1: any 3
    assert len(equal) == 3 and len(set(equal)) == 3
    assert sorted(rso_sample([1.0, 5.0, -3.0], 3, math.inf, rng)) == [0, 1, 2]


@pytest.mark.parametrize("bad", NON_FINITE)
def test_rso_refuses_non_finite_rewards(bad):
    with pytest.raises(ValueError, match="finite"):
        rso_sample([0.1, bad], 1, 0.5, random.Random(0))


@pytest.mark.parametrize(("n", "beta"), [(0, 0.5), (-1, 0.5), (1, 0.0), (1, -0.5), (1, float("nan"))])
def test_rso_rejects_bad_arguments(n, beta):
    with pytest.raises(ValueError):
        rso_sample([0.1, 0.2], n, beta, random.Random(0))


# Rewards on a 0.25 grid: distinct values differ by ≥ 0.25, so exp(−0.25/1e−9) underflows to 0.
grid_rewards = st.lists(st.integers(-8, 8).map(lambda v: v / 4), min_size=0, max_size=10)


@given(grid_rewards, st.integers(1, 12), st.integers(0, 2**32))
def test_rso_tiny_beta_returns_top_n(rewards, n, seed):
    accepted = rso_sample(rewards, n, 1e-9, random.Random(seed))
    assert len(accepted) == len(set(accepted)) == min(n, len(rewards))
    # Same reward multiset as the top-n, accepted best first (ties at the cut-off: any of them).
    assert [rewards[i] for i in accepted] == sorted(rewards, reverse=True)[:n]


@given(st.lists(st.floats(-5, 5), max_size=10), st.integers(1, 12), st.floats(0.01, 10.0), st.integers(0, 2**32))
def test_rso_accepts_distinct_candidates(rewards, n, beta, seed):
    accepted = rso_sample(rewards, n, beta, random.Random(seed))
    assert len(accepted) == len(set(accepted)) == min(n, len(rewards))
    assert all(0 <= i < len(rewards) for i in accepted)


def _first_accepted_counts(n_candidates: int, trials: int, seed: int):
    pi, r, beta = [0.4, 0.3, 0.2, 0.1], [0.0, 0.5, 1.0, 1.5], 0.5
    rng, counts = random.Random(seed), [0, 0, 0, 0]
    for _ in range(trials):
        items = rng.choices(range(4), weights=pi, k=n_candidates)
        [first] = rso_sample([r[i] for i in items], 1, beta, rng)
        counts[items[first]] += 1
    # Target π*(y) ∝ π_sft(y)·exp(r(y)/β): 0.4·e^0, 0.3·e^1, 0.2·e^2, 0.1·e^3
    #   = 0.4, 0.8155, 1.4778, 2.0086; sum 4.7019 → [0.0851, 0.1734, 0.3143, 0.4272].
    w = [p * math.exp(x / beta) for p, x in zip(pi, r)]
    return counts, [trials * x / sum(w) for x in w]


def test_rso_first_accepted_follows_tilted_distribution():
    # Rejection sampling is exact when the envelope constant is the GLOBAL max reward (1.5 here)
    # and the candidate stream is unbounded. RSO uses m = max over the N drawn candidates
    # instead: when item 3 is absent, a lower-reward item is accepted with probability 1 and gets
    # over-weighted (see the N = 2 control below). With N = 64, P(item 3 absent) = 0.9^64 ≈ 0.0012,
    # and P(no acceptance in 64 visits | m = 1.5) ≤ (1 − 0.234)^63 ≈ 5e−8 (acceptance rate
    # Σ π·exp((r − 1.5)/β) = 0.4·e^−3 + 0.3·e^−2 + 0.2·e^−1 + 0.1 = 0.234); so the first accepted
    # item is off the target by ~1e−3 in total variation — far below what 20000 trials resolve
    # (standard error of a proportion ≈ 0.003).
    counts, expected = _first_accepted_counts(64, 20000, seed=0)
    assert chisquare(counts, expected).pvalue > 0.01


def test_rso_small_pool_is_biased_by_the_sample_max():
    # Control: with N = 2 the sample max is usually not the global max; e.g. both candidates are
    # item 0 with probability 0.4² = 0.16 and it is then accepted for sure, against a target of 0.085.
    counts, expected = _first_accepted_counts(2, 5000, seed=0)
    assert counts[0] / 5000 > 0.16
    assert chisquare(counts, expected).pvalue < 1e-6


def test_rso_huge_beta_is_uniform():
    # β = ∞: every acceptance probability is exp(0) = 1, so the first accepted is the first of a
    # uniform shuffle: each of 4 candidates with probability 1/4.
    rng, counts = random.Random(1), [0, 0, 0, 0]
    for _ in range(8000):
        counts[rso_sample([0.0, 0.5, 1.0, 1.5], 1, math.inf, rng)[0]] += 1
    assert chisquare(counts, [2000] * 4).pvalue > 0.01


# --- RSO first-round and tournament pairing ----------------------------------------------

REWARDS = [0.3, 0.8, 0.5, 0.1, 0.6]


def test_first_round_pairs_hand_computed():
    # (0 vs 1): 0.8 > 0.3 → (1, 0); (2 vs 3): 0.5 > 0.1 → (2, 3); 4 is the odd one out.
    assert first_round_pairs([0, 1, 2, 3, 4], REWARDS) == [(1, 0), (2, 3)]
    # Indices in another order / a subset: (4 vs 0) → (4, 0); (3 vs 1) → (1, 3).
    assert first_round_pairs([4, 0, 3, 1], REWARDS) == [(4, 0), (1, 3)]


def test_tournament_pairs_hand_computed():
    # Round 1: (1, 0), (2, 3), 4 has a bye → [1, 2, 4]. Round 2: 1 vs 2 → (1, 2), 4 bye → [1, 4].
    # Round 3: 1 vs 4 → (1, 4). n − 1 = 4 pairs.
    assert tournament_pairs([0, 1, 2, 3, 4], REWARDS) == [(1, 0), (2, 3), (1, 2), (1, 4)]


def test_pairing_drops_ties():
    # 0 vs 1 tie (0.5 = 0.5): dropped; 2 vs 3 → (3, 2). Tournament: 0 advances from the tie,
    # round 2: 0 vs 3 → (3, 0): 2 pairs instead of n − 1 = 3.
    rewards = [0.5, 0.5, 0.2, 0.9]
    assert first_round_pairs([0, 1, 2, 3], rewards) == [(3, 2)]
    assert tournament_pairs([0, 1, 2, 3], rewards) == [(3, 2), (3, 0)]
    assert first_round_pairs([0, 1, 2], [0.4] * 3) == tournament_pairs([0, 1, 2], [0.4] * 3) == []


@pytest.mark.parametrize("fn", [first_round_pairs, tournament_pairs])
def test_pairing_edge_cases(fn):
    assert fn([], []) == [] and fn([], [0.1]) == [] and fn([0], [0.1]) == []
    with pytest.raises(ValueError, match="out of range"):
        fn([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="distinct"):
        fn([1, 1], [0.1, 0.2])
    for bad in NON_FINITE:
        with pytest.raises(ValueError, match="finite"):
            fn([0, 1], [bad, 0.2])


indexed_rewards = (st.lists(st.integers(-4, 4).map(lambda v: v / 2), min_size=0, max_size=12)
                   .flatmap(lambda r: st.tuples(st.permutations(range(len(r))), st.just(r))))


@given(indexed_rewards)
def test_pairs_are_oriented_by_reward(case):
    indices, rewards = case
    first, tour = first_round_pairs(indices, rewards), tournament_pairs(indices, rewards)
    for c, r in first + tour:
        assert rewards[c] > rewards[r]
    assert len(first) <= len(indices) // 2 and len(tour) <= max(len(indices) - 1, 0)
    flat = [i for p in first for i in p]
    assert len(flat) == len(set(flat))  # first-round pairs are disjoint


@given(st.lists(st.floats(-5, 5), min_size=2, max_size=12, unique=True))
def test_tournament_with_distinct_rewards_has_n_minus_1_pairs_and_crowns_the_best(rewards):
    pairs = tournament_pairs(range(len(rewards)), rewards)
    assert len(pairs) == len(rewards) - 1
    assert pairs[-1][0] == max(range(len(rewards)), key=rewards.__getitem__)


# --- pairwise ranking and judges ---------------------------------------------------------

def test_pairwise_ranking_hand_computed(caplog):
    # rewards [0.2, 0.9, 0.5]; merge sort of [0, 1, 2]: split [0] | [1, 2].
    #   Sort [1, 2]: compare(2, 1)? 0.5 > 0.9 no → [1, 2]                         (1 comparison)
    #   Merge [0] with [1, 2]: compare(1, 0)? yes → 1; compare(2, 0)? yes → 2; then 0  (2 comparisons)
    # → [1, 2, 0] with 3 comparisons ≤ n·⌈log2 n⌉ = 3·2 = 6.
    counter = CountingCompare(reward_compare([0.2, 0.9, 0.5]))
    with caplog.at_level(logging.DEBUG, logger="rayalign.selection"):
        assert pairwise_ranking(3, counter) == [1, 2, 0]
    assert counter.calls == 3
    assert "3 candidates ranked with 3 comparisons" in caplog.text
    pairwise_ranking(3, counter)  # the count is cumulative over the wrapper's lifetime
    assert counter.calls == 6


def test_pairwise_ranking_ties_keep_index_order():
    # 0 and 2 tie at 0.5: neither beats the other, so they keep index order behind 1.
    assert pairwise_ranking(3, reward_compare([0.5, 0.7, 0.5])) == [1, 0, 2]
    assert pairwise_ranking(4, reward_compare([0.1] * 4)) == [0, 1, 2, 3]


def test_pairwise_ranking_edge_cases():
    counter = CountingCompare(reward_compare([]))
    assert pairwise_ranking(0, counter) == [] and counter.calls == 0
    counter = CountingCompare(reward_compare([0.4]))
    assert pairwise_ranking(1, counter) == [0] and counter.calls == 0
    with pytest.raises(ValueError):
        pairwise_ranking(-1, reward_compare([]))
    for bad in NON_FINITE:
        with pytest.raises(ValueError, match="finite"):
            reward_compare([0.1, bad])


def test_judge_compare_bradley_terry_judge():
    # Hidden skills s = [0, 2, 1]; judge P(i ≻ j) = σ(s_i − s_j), e.g. P(1 ≻ 2) = σ(1) = 0.731 > 0.5.
    skills = [0.0, 2.0, 1.0]
    judge = judge_compare(lambda i, j: 1 / (1 + math.exp(skills[j] - skills[i])))
    assert pairwise_ranking(3, judge) == [1, 2, 0]
    # threshold 0.75: σ(1) = 0.731 does not clear it, σ(2) = 0.881 does: 1 ≻ 0 only.
    # Sorting [0, 1, 2]: [1, 2]: 2 ≻ 1? no → [1, 2]; merge [0] | [1, 2]: 1 ≻ 0 yes (0.881); 2 ≻ 0? 0.731 no → [1, 0, 2].
    strict = judge_compare(lambda i, j: 1 / (1 + math.exp(skills[j] - skills[i])), threshold=0.75)
    assert pairwise_ranking(3, strict) == [1, 0, 2]


@pytest.mark.parametrize("p", [float("nan"), 1.2, -0.1])
def test_judge_compare_refuses_non_probabilities(p):
    with pytest.raises(ValueError, match="probability"):
        pairwise_ranking(2, judge_compare(lambda i, j: p))


@pytest.mark.parametrize("threshold", [0.4, 1.0, float("nan")])
def test_judge_compare_rejects_bad_threshold(threshold):
    with pytest.raises(ValueError, match="threshold"):
        judge_compare(lambda i, j: 0.5, threshold=threshold)


@settings(max_examples=200)
@given(st.lists(st.integers(-5, 5), max_size=40))
def test_pairwise_ranking_equals_sort_and_is_n_log_n(rewards):
    n = len(rewards)
    counter = CountingCompare(reward_compare(rewards))
    assert pairwise_ranking(n, counter) == sorted(range(n), key=lambda i: -rewards[i])
    ceil_log2 = (n - 1).bit_length() if n else 0  # ⌈log2 n⌉ exactly, for n ≥ 1
    assert counter.calls <= n * ceil_log2


# --- perplexity filter -------------------------------------------------------------------

def test_perplexity_filter_hand_computed():
    # ppl = exp(−logp / num_tokens): exp(2/2) = e = 2.718, exp(10/5) = e² = 7.389, exp(30/10) = e³ = 20.09.
    logps, lens = [-2.0, -10.0, -30.0], [2, 5, 10]
    assert perplexity_filter(logps, lens, 2.0, 10.0) == [True, True, False]
    assert perplexity_filter(logps, lens, 3.0, None) == [False, True, True]
    assert perplexity_filter(logps, lens, None, 3.0) == [True, False, False]
    assert perplexity_filter(logps, lens, None, None) == [True, True, True]
    assert perplexity_filter([], [], 1.0, 2.0) == []


def test_perplexity_filter_extreme_logps_do_not_overflow():
    # −logp/n = 1e6 → ppl = exp(1e6) = inf: over any finite max, kept without one.
    assert perplexity_filter([-1e6], [1], None, 1e300) == [False]
    assert perplexity_filter([-1e6], [1], 5.0, None) == [True]


@pytest.mark.parametrize(("logps", "lens", "lo", "hi", "match"), [
    ([-1.0], [0], None, None, "num_tokens"),
    ([-1.0], [-3], None, None, "num_tokens"),
    ([float("nan")], [2], None, None, "finite"),
    ([-float("inf")], [2], None, None, "finite"),
    ([-1.0, -2.0], [2], None, None, "length"),
    ([-1.0], [2], 0.0, None, "min_ppl"),
    ([-1.0], [2], 5.0, 2.0, "above"),
])
def test_perplexity_filter_rejects_bad_input(logps, lens, lo, hi, match):
    with pytest.raises(ValueError, match=match):
        perplexity_filter(logps, lens, lo, hi)


# --- Labelled random pairs ----------------------------------------------------------------

class ScriptedChoice:
    """A random.Random stand-in: choice takes the given element, random() replays a fixed draw."""

    def __init__(self, index, u):
        self.index, self.u = index, u

    def choice(self, seq):
        return seq[self.index]

    def random(self):
        return self.u


def test_random_pair_hand_computed():
    rewards, responses = [0.2, 0.9, 0.5], ["a", "b", "c"]
    # Candidate pairs (0, 1), (0, 2), (1, 2); the first is drawn. P(0 ≻ 1) = σ((0.2 − 0.9)/0.1) =
    # σ(−7) = 9.11e-4: a draw of 0.3 orders them by reward, one of 5e-4 flips the label.
    assert random_pair(rewards, responses, 0.1, ScriptedChoice(0, 0.3)) == [(1, 0)]
    assert random_pair(rewards, responses, 0.1, ScriptedChoice(0, 5e-4)) == [(0, 1)]
    # (1, 2) with T = 0 is the noiseless annotator: the higher reward, whatever the draw.
    assert random_pair(rewards, responses, 0.0, ScriptedChoice(2, 1e-9)) == [(1, 2)]


def test_random_pair_draws_two_distinct_responses():
    # Responses 0 and 1 are the same text: the candidates are (0, 2) and (1, 2) only.
    assert random_pair([0.0, 1.0, 0.5], ["x", "x", "y"], 0.0, ScriptedChoice(0, 0.5)) == [(2, 0)]
    assert random_pair([0.0, 1.0, 0.5], ["x", "x", "y"], 0.0, ScriptedChoice(1, 0.5)) == [(1, 2)]
    assert random_pair([0.0, 1.0], ["x", "x"], 0.1, random.Random(0)) == []
    assert random_pair([0.3], ["x"], 0.1, random.Random(0)) == []


def test_random_pair_flips_labels_at_the_bradley_terry_rate():
    # A gap of 0.1 at T = 0.1: the lower reward is chosen with probability σ(−1) = 0.2689.
    rng, n = random.Random(7), 4000
    flips = sum(random_pair([0.0, 0.1], ["a", "b"], 0.1, rng) == [(0, 1)] for _ in range(n))
    se = math.sqrt(0.2689 * (1 - 0.2689) / n)
    assert abs(flips / n - 0.2689) < 4 * se


def test_random_pair_in_select_pairs_is_seeded_per_prompt():
    rows = [{"prompt_id": "p", "reward": r, "response": f"r{i}"} for i, r in enumerate([0.1, 0.7, -0.4, 0.3])]
    cfg = SelectConfig(strategy="random_pair")
    first = select_pairs(rows, cfg).pairs
    assert len(first) == 1 and first == select_pairs(rows, cfg).pairs  # one pair, the same draw each time
    draws = {tuple(select_pairs(rows, SelectConfig(strategy="random_pair", seed=s)).pairs[0]) for s in range(40)}
    assert len({frozenset(d) for d in draws}) == 6  # every one of the 4·3/2 pairs comes up over seeds


# --- select_pairs / pairs_for_prompt helpers ---------------------------------------------

def test_max_pairs_per_prompt_keeps_largest_gaps():
    # Gaps above 0.4337: 0→1 (1.0), 0→2 (0.5), 0→3 (2.0), 1→3 (1.0), 2→1 (0.5), 2→3 (1.5).
    cfg = SelectConfig(tau=0.25, eta=0.85, max_pairs_per_prompt=2)
    rows = [{"prompt_id": "p", "reward": r} for r in [1.0, 0.0, 0.5, -1.0]]
    assert select_pairs(rows, cfg).pairs == [(0, 3), (2, 3)]


def test_pairs_for_prompt_builds_rows_in_sample_order():
    rewards = {0: 0.9, 1: 0.0, 2: 0.5, 3: -0.6}
    rows = [{"prompt_id": "p", "prompt": "x", "prompt_token_ids": [1], "sample_idx": i,
             "response": f"r{i}", "response_token_ids": [i], "reward": rewards[i], "ref_logprob": -float(i)}
            for i in [3, 1, 0, 2]]  # deliberately out of sample order
    # RS-DPO lists pairs by chosen, then rejected, sample index; τ = 0.25, η = 0.85 keep gaps > 0.4337:
    # 0→1 (0.9), 0→3 (1.5), 1→3 (0.6), 2→1 (0.5), 2→3 (1.1); 0→2 (0.4) is dropped. In the given row
    # order they would come out as 1→3, 0→3, 0→1, 2→3, 2→1.
    pairs = pairs_for_prompt(rows, SelectConfig(strategy="rs_dpo", tau=0.25, eta=0.85))
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("r0", "r1"), ("r0", "r3"), ("r1", "r3"),
                                                             ("r2", "r1"), ("r2", "r3")]
    assert [(p["chosen_ref_logprob"], p["rejected_ref_logprob"]) for p in pairs] == [
        (0.0, -1.0), (0.0, -3.0), (-1.0, -3.0), (-2.0, -1.0), (-2.0, -3.0)]
    assert [(p["chosen_reward"], p["rejected_reward"]) for p in pairs][0] == (0.9, 0.0)
    assert {p["strategy"] for p in pairs} == {"rs_dpo"}
