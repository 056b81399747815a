import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rayalign.config import SelectConfig
from rayalign.selection import best_vs_worst, rs_dpo_pairs
from rayalign.selection.pairs import pairs_for_prompt, select_pairs


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


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_rewards_are_refused(bad):
    with pytest.raises(ValueError, match="finite"):
        rs_dpo_pairs([0.1, bad], tau=1.0, eta=0.85)
    with pytest.raises(ValueError, match="finite"):
        best_vs_worst([bad, 0.2])


def test_best_vs_worst():
    assert best_vs_worst([0.1, 0.5, -0.3, 0.5]) == [(1, 2)]  # first maximum on ties
    assert best_vs_worst([0.2, 0.2]) == []
    assert best_vs_worst([0.7]) == []


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
