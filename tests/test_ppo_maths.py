"""The PPO maths (rayalign.losses.ppo) against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from rayalign.losses.ppo import (AdaptiveKLController, gae, kl_penalized_rewards, masked_whiten, ppo_policy_loss,
                                 ppo_value_loss)


def t(*rows):
    return torch.tensor(rows, dtype=torch.float64)


def close(actual: torch.Tensor, expected: list) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=torch.float64))


def test_the_score_lands_on_the_last_real_token_of_a_right_padded_row():
    # Row 0: 3 real tokens; row 1: 2 real tokens, then a pad. kl_coef 0.1.
    logprobs, ref = t([-1.0, -2.0, -0.5], [-1.0, -1.0, -9.0]), t([-1.5, -1.0, -0.5], [-2.0, -1.0, -3.0])
    mask = t([1, 1, 1], [1, 1, 0])
    rewards = kl_penalized_rewards(torch.tensor([2.0, -1.0]), logprobs, ref, mask, kl_coef=0.1)
    # Row 0: −0.1·(0.5, −1, 0) = (−0.05, 0.1, 0), + 2 on token 2 → (−0.05, 0.1, 2).
    # Row 1: −0.1·(1, 0) = (−0.1, 0), + (−1) on token 1 (not on the pad) → (−0.1, −1, 0).
    close(rewards, [[-0.05, 0.1, 2.0], [-0.1, -1.0, 0.0]])


def test_gae_of_three_tokens():
    # γ = 1, λ = 0.5; r = (0, 0, 1), V = (0.5, 0.6, 0.7), V = 0 past token 2.
    # δ2 = 1 + 0 − 0.7 = 0.3;  δ1 = 0 + 0.7 − 0.6 = 0.1;  δ0 = 0 + 0.6 − 0.5 = 0.1.
    # A2 = 0.3;  A1 = 0.1 + 0.5·0.3 = 0.25;  A0 = 0.1 + 0.5·0.25 = 0.225.  R = A + V = (0.725, 0.85, 1.0).
    adv, ret = gae(t([0.0, 0.0, 1.0]), t([0.5, 0.6, 0.7]), t([1, 1, 1]), gamma=1.0, lam=0.5)
    close(adv, [[0.225, 0.25, 0.3]])
    close(ret, [[0.725, 0.85, 1.0]])


def test_gae_ignores_values_past_the_last_real_token():
    # Token 2 is padding with a (garbage) value 9: V_2 counts as 0. γ = 0.9, λ = 1.
    # δ1 = 1 + 0 − 0.4 = 0.6;  δ0 = 0 + 0.9·0.4 − 0.2 = 0.16;  A1 = 0.6;  A0 = 0.16 + 0.9·0.6 = 0.7.
    adv, ret = gae(t([0.0, 1.0, 5.0]), t([0.2, 0.4, 9.0]), t([1, 1, 0]), gamma=0.9, lam=1.0)
    close(adv, [[0.7, 0.6, 0.0]])
    close(ret, [[0.9, 1.0, 0.0]])


def test_masked_whiten():
    # Masked entries 1, 2, 3 (the 100 is padding): μ = 2, population σ² = 2/3.
    x, mask = t([1.0, 2.0], [3.0, 100.0]), t([1, 1], [1, 0])
    s = math.sqrt(2 / 3 + 1e-8)
    close(masked_whiten(x, mask), [[-1 / s, 0.0], [1 / s, 0.0]])
    close(masked_whiten(x, mask, shift_mean=False), [[2 - 1 / s, 2.0], [2 + 1 / s, 0.0]])


def test_policy_loss_clips_the_ratio_only_where_it_helps():
    # Token 0: ρ = e^0.5 = 1.6487, A = 1: max(−1.6487, −1.2) = −1.2 (clipped).
    # Token 1: ρ = e^−0.1 = 0.9048, A = −2: max(1.8097, 2·0.9048 = 1.8097) → 1.8097 (inside the range).
    # Token 2: ρ = e^−0.5 = 0.6065, A = 1: max(−0.6065, −0.8) = −0.6065 (unclipped: the pessimistic term).
    # Token 3 is padding. Mean over 3 tokens: (−1.2 + 1.8097 − 0.6065)/3 = 0.00107; 1 of 3 clipped.
    logprobs, old = t([0.5, -0.1, -0.5, 3.0]), t([0.0, 0.0, 0.0, 0.0])
    loss, clipped = ppo_policy_loss(logprobs, old, t([1.0, -2.0, 1.0, 7.0]), t([1, 1, 1, 0]), clip=0.2)
    expected = (-1.2 + 2 * math.exp(-0.1) - math.exp(-0.5)) / 3
    assert loss.item() == pytest.approx(expected) and clipped.item() == pytest.approx(1 / 3)


def test_value_loss_takes_the_larger_of_clipped_and_unclipped():
    # Token 0: V = 1.0, V_old = 0.5, R = 0.6: unclipped 0.16; clipped V = 0.7 → 0.01; max 0.16.
    # Token 1: V = 0.0, V_old = 0.5, R = 0.0: unclipped 0; clipped V = 0.3 → 0.09; max 0.09.
    # 0.5 · mean(0.16, 0.09) = 0.0625.
    loss = ppo_value_loss(t([1.0, 0.0]), t([0.5, 0.5]), t([0.6, 0.0]), t([1, 1]), clip=0.2)
    assert loss.item() == pytest.approx(0.0625)


def test_adaptive_kl_controller():
    # Target 6, horizon 10: KL 9 → error min(9/6 − 1, 0.2) = 0.2 → β·(1 + 0.2·2/10) = 0.1·1.04 = 0.104.
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10)
    assert ctl.update(9.0, n_steps=2) == pytest.approx(0.104)
    # KL 5.4 → error −0.1 → 0.104·(1 − 0.1·1/10) = 0.10296.
    assert ctl.update(5.4, n_steps=1) == pytest.approx(0.10296) and ctl.value == pytest.approx(0.10296)
    fixed = AdaptiveKLController(0.05)
    assert fixed.update(100.0, n_steps=5) == 0.05
    with pytest.raises(ValueError, match="target"):
        AdaptiveKLController(0.1, target=0.0)


def test_token_entropy_of_known_distributions():
    """Position 0: logits (ln 1, ln 3) → p = (1/4, 3/4), H = ¼·ln 4 + ¾·ln(4/3) = 0.34657 + 0.21576.
    Position 1: equal logits → H = ln 2. The log-prob of the next token (1, then 0) comes with it."""
    from types import SimpleNamespace

    from rayalign.logprobs import token_logprobs

    logits = torch.tensor([[[0.0, math.log(3)], [5.0, 5.0], [0.0, 0.0]]])
    # Like transformers' causal LMs, it returns the logits of the last `logits_to_keep` positions.
    model = lambda input_ids, attention_mask, logits_to_keep: SimpleNamespace(  # noqa: E731
        logits=logits[:, -logits_to_keep:])
    logprobs, entropy = token_logprobs(model, torch.tensor([[0, 1, 0]]), torch.ones(1, 3), with_entropy=True)
    torch.testing.assert_close(entropy, torch.tensor([[0.25 * math.log(4) + 0.75 * math.log(4 / 3), math.log(2)]]))
    torch.testing.assert_close(logprobs, torch.tensor([[math.log(0.75), math.log(0.5)]]))


def test_whitening_over_workers_equals_whitening_the_whole_rollout():
    """Two workers, each with half of the rollout, whiten with an all_reduce that sums across them:
    each gets its rows of the whole batch's whitening (μ = 2.5, σ² = 1.25 over x = 1, 2, 3, 4)."""
    import threading

    halves = [(t([1.0, 9.0], [2.0, 0.0]), t([1, 0], [1, 0])), (t([3.0, 4.0]), t([1, 1]))]
    barrier, deposits = threading.Barrier(2), {}
    results = [None, None]

    def worker(rank: int) -> None:
        def all_reduce(x: torch.Tensor) -> torch.Tensor:
            deposits[rank] = x
            barrier.wait()
            total = deposits[0] + deposits[1]
            barrier.wait()  # both have read before the next call overwrites
            return total
        results[rank] = masked_whiten(*halves[rank], all_reduce=all_reduce)

    threads = [threading.Thread(target=worker, args=(r,)) for r in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    s = math.sqrt(1.25 + 1e-8)
    close(results[0], [[-1.5 / s, 0.0], [-0.5 / s, 0.0]])
    close(results[1], [[0.5 / s, 1.5 / s]])


def test_the_critic_starts_from_the_reward_model(tiny_reward_model):
    """Loaded from a reward model, the critic's value at the last token is the reward model's score
    of the sequence (same backbone, same head)."""
    from transformers import AutoModelForSequenceClassification

    from rayalign.training.ppo import load_critic

    ids = torch.tensor([[5, 17, 42, 99, 7]])
    critic = load_critic(tiny_reward_model).eval()
    reward_model = AutoModelForSequenceClassification.from_pretrained(tiny_reward_model).eval()
    with torch.no_grad():
        value = critic(input_ids=ids).logits[0, -1, 0]
        score = reward_model(input_ids=ids).logits[0, 0]
    assert value.item() == pytest.approx(score.item(), abs=1e-5) and abs(score.item()) > 1e-4
