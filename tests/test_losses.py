"""Preference and reward-model losses in `rayalign.losses`: DPO, IPO, SLiC-HF, RSO's hinge-norm,
the budget regulariser and Bradley-Terry, against hand-computed values and gradients, their
argument checks, and finiteness / gradient-sign properties over random batches."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rayalign.losses import bradley_terry_loss, budget_regularizer, dpo_loss, hinge_norm_loss, ipo_loss, slic_loss


def t(*values):
    return torch.tensor(values, dtype=torch.float64, requires_grad=True)


# --- DPO ---------------------------------------------------------------------------------

def test_dpo_loss_matches_hand_computed_values():
    # Pair 1: Δ_norm = (−10 − (−11)) − (−12 − (−11)) = 1 − (−1) = 2; β·Δ = 0.2;
    #   −log σ(0.2) = log(1 + e^−0.2) = log(1.8187307531) = 0.5981388693.
    # Pair 2: everything equal, Δ = 0: −log σ(0) = log 2 = 0.6931471806.
    loss = dpo_loss(t(-10.0, -5.0), t(-12.0, -5.0), t(-11.0, -5.0), t(-11.0, -5.0), beta=0.1)
    assert loss.shape == (2,)
    assert loss[0].item() == pytest.approx(0.5981388693, abs=1e-9)
    assert loss[1].item() == pytest.approx(math.log(2), abs=1e-12)


def test_dpo_label_smoothing_mixes_both_directions():
    # ε = 0.1: 0.9·log(1 + e^−0.2) + 0.1·log(1 + e^0.2) = 0.9·0.5981388693 + 0.1·0.7981388693 = 0.6181388693.
    loss = dpo_loss(t(-10.0), t(-12.0), t(-11.0), t(-11.0), beta=0.1, label_smoothing=0.1)
    assert loss.item() == pytest.approx(0.6181388693, abs=1e-9)


def test_dpo_gradient_raises_chosen_and_lowers_rejected():
    pc, pr = t(-3.0, -8.0), t(-4.0, -2.0)
    dpo_loss(pc, pr, t(-3.5, -7.0), t(-3.5, -2.5), beta=0.5).sum().backward()
    assert (pc.grad < 0).all() and (pr.grad > 0).all()


def test_dpo_loss_is_finite_for_extreme_margins():
    loss = dpo_loss(t(0.0, -1e4), t(-1e4, 0.0), t(0.0, 0.0), t(0.0, 0.0), beta=1.0)
    assert torch.isfinite(loss).all()
    assert loss[0].item() == pytest.approx(0.0, abs=1e-12) and loss[1].item() == pytest.approx(1e4)


# --- IPO ---------------------------------------------------------------------------------

def test_ipo_hand_computed():
    # Pair 1: Δ_norm = (−10 − (−11)) − (−12 − (−11)) = 1 − (−1) = 2; β = 0.1 → target 1/(2·0.1) = 5;
    #   (2 − 5)² = 9.
    # Pair 2: all equal, Δ_norm = 0 → (0 − 5)² = 25.
    loss = ipo_loss(t(-10.0, -5.0), t(-12.0, -5.0), t(-11.0, -5.0), t(-11.0, -5.0), beta=0.1)
    assert loss.shape == (2,)
    assert loss.tolist() == pytest.approx([9.0, 25.0], abs=1e-12)
    # β = 0.25 → target 2 = Δ_norm: zero loss.
    assert ipo_loss(t(-10.0), t(-12.0), t(-11.0), t(-11.0), beta=0.25).item() == pytest.approx(0.0, abs=1e-12)


def test_ipo_gradient_regresses_to_target_margin():
    # Δ_norm = 2 < 5: d/dpc = 2·(2 − 5) = −6, d/dpr = +6 (push the margin up).
    # Δ_norm = 8 > 5: d/dpc = 2·(8 − 5) = +6, d/dpr = −6 (pull it back: IPO's regularisation).
    pc, pr = t(-10.0, -2.0), t(-12.0, -10.0)
    ipo_loss(pc, pr, t(0.0, 0.0), t(0.0, 0.0), beta=0.1).sum().backward()
    assert pc.grad.tolist() == pytest.approx([-6.0, 6.0])
    assert pr.grad.tolist() == pytest.approx([6.0, -6.0])


def test_ipo_on_per_token_means():
    # The caller may pass per-token means: chosen −6 over 3 tokens = −2, rejected −12 over 4 = −3,
    # refs 0 → Δ_norm = −2 − (−3) = 1; β = 0.5 → target 1 → loss 0.
    assert ipo_loss(t(-6.0 / 3), t(-12.0 / 4), t(0.0), t(0.0), beta=0.5).item() == pytest.approx(0.0, abs=1e-12)


# --- SLiC-HF -----------------------------------------------------------------------------

def test_slic_hand_computed():
    # δ = 1, λ = 0.1.
    # Pair 1: Δ = −10 − (−12) = 2 → max(0, 1 − 2) = 0; −0.1·(−10) = 1.0 → 1.0.
    # Pair 2: Δ = 0 → max(0, 1 − 0) = 1; −0.1·(−20) = 2.0 → 3.0.
    # Pair 3: Δ = −3 − (−2.5) = −0.5 → 1.5; −0.1·(−4) = 0.4 → 1.9.
    loss = slic_loss(t(-10.0, -5.0, -3.0), t(-12.0, -5.0, -2.5), t(-10.0, -20.0, -4.0))
    assert loss.tolist() == pytest.approx([1.0, 3.0, 1.9], abs=1e-12)
    # δ = 3, λ = 0 on pair 1: max(0, 3 − 2) = 1.
    assert slic_loss(t(-10.0), t(-12.0), t(-10.0), delta=3.0, lam=0.0).item() == pytest.approx(1.0)


def test_slic_gradient_only_while_hinge_active():
    # Pair 1: Δ = 2 ≥ δ = 1 → hinge inactive → d/dpc = d/dpr = 0. Pair 2: Δ = 0 → d/dpc = −1, d/dpr = +1.
    # Target term: d/dtarget = −λ = −0.1 for both.
    pc, pr, tgt = t(-10.0, -5.0), t(-12.0, -5.0), t(-10.0, -5.0)
    slic_loss(pc, pr, tgt).sum().backward()
    assert pc.grad.tolist() == [0.0, -1.0] and pr.grad.tolist() == [0.0, 1.0]
    assert tgt.grad.tolist() == pytest.approx([-0.1, -0.1])


# --- RSO hinge-norm ----------------------------------------------------------------------

def test_hinge_norm_hand_computed():
    # γ = 0.05.
    # Pair 1: Δ_norm = 2 (as in the IPO test) → 1 − 0.05·2 = 0.9.
    # Pair 2: Δ_norm = (−1 − 0) − (−31 − 0) = 30 → 1 − 1.5 < 0 → 0.
    # Pair 3: Δ_norm = (−20 − (−10)) − (−10 − (−10)) = −10 → 1 + 0.5 = 1.5.
    loss = hinge_norm_loss(t(-10.0, -1.0, -20.0), t(-12.0, -31.0, -10.0), t(-11.0, 0.0, -10.0), t(-11.0, 0.0, -10.0))
    assert loss.tolist() == pytest.approx([0.9, 0.0, 1.5], abs=1e-12)


def test_hinge_norm_gradient():
    # Active: d/dpc = −γ = −0.05, d/dpr = +0.05; inactive (Δ_norm = 30 > 1/γ = 20): 0.
    pc, pr = t(-10.0, -1.0), t(-12.0, -31.0)
    hinge_norm_loss(pc, pr, t(-11.0, 0.0), t(-11.0, 0.0)).sum().backward()
    assert pc.grad.tolist() == pytest.approx([-0.05, 0.0]) and pr.grad.tolist() == pytest.approx([0.05, 0.0])


# --- budget regulariser ------------------------------------------------------------------

def test_budget_regularizer_hand_computed():
    # Pair 1: rc − pc = −10 − (−12) = 2 below the reference.  Pair 2: −10 − (−9) = −1 (above it).
    # b = 0, λ = 1: [max(0, 2), max(0, −1)] = [2, 0].
    # b = 0.5, λ = 1: [1.5, 0].   b = 0.5, λ = 2: [3, 0].   b = 3: [0, 0] (within budget).
    pc, rc = t(-12.0, -9.0), t(-10.0, -10.0)
    assert budget_regularizer(pc, rc).tolist() == pytest.approx([2.0, 0.0])
    assert budget_regularizer(pc, rc, budget=0.5).tolist() == pytest.approx([1.5, 0.0])
    assert budget_regularizer(pc, rc, budget=0.5, lam=2.0).tolist() == pytest.approx([3.0, 0.0])
    assert budget_regularizer(pc, rc, budget=3.0).tolist() == pytest.approx([0.0, 0.0])


def test_budget_regularizer_adds_to_a_preference_loss():
    # Δ_norm = (−12 + 11) − (−14 + 11) = −1 + 3 = 2 → DPO (β = 0.1) = 0.5981388693 (see the DPO tests).
    # The chosen fell rc − pc = −11 + 12 = 1 below the reference → + 1·max(0, 1 − 0) = 1.
    pc, pr, rc, rr = t(-12.0), t(-14.0), t(-11.0), t(-11.0)
    total = dpo_loss(pc, pr, rc, rr) + budget_regularizer(pc, rc)
    assert total.item() == pytest.approx(0.5981388693 + 1.0, abs=1e-9)


# --- Bradley-Terry (reward model) --------------------------------------------------------

def test_bradley_terry_loss_hand_computed():
    loss = bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0]))
    assert loss.tolist() == pytest.approx([math.log(1 + math.exp(-2.0)), math.log(2.0)])


# --- shared edge cases and argument checks -----------------------------------------------

def test_empty_batches_give_empty_losses():
    e = torch.zeros(0, dtype=torch.float64)
    assert ipo_loss(e, e, e, e).shape == (0,)
    assert slic_loss(e, e, e).shape == (0,)
    assert hinge_norm_loss(e, e, e, e).shape == (0,)
    assert budget_regularizer(e, e).shape == (0,)


@pytest.mark.parametrize("kwargs", [{"beta": 0.0}, {"beta": -1.0}, {"label_smoothing": 0.5}])
def test_dpo_rejects_bad_hyperparameters(kwargs):
    with pytest.raises(ValueError):
        dpo_loss(t(0.0), t(0.0), t(0.0), t(0.0), **kwargs)


@pytest.mark.parametrize(("fn", "kwargs"), [
    (ipo_loss, {"beta": 0.0}), (ipo_loss, {"beta": -0.1}), (ipo_loss, {"beta": float("nan")}),
    (hinge_norm_loss, {"gamma": 0.0}), (hinge_norm_loss, {"gamma": float("inf")}),
])
def test_reference_losses_reject_bad_hyperparameters(fn, kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        fn(t(0.0), t(0.0), t(0.0), t(0.0), **kwargs)


@pytest.mark.parametrize("kwargs", [{"delta": 0.0}, {"delta": -1.0}, {"lam": -0.1}, {"lam": float("nan")}])
def test_slic_rejects_bad_hyperparameters(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        slic_loss(t(0.0), t(0.0), t(0.0), **kwargs)


@pytest.mark.parametrize("kwargs", [{"budget": -0.5}, {"budget": float("inf")}, {"lam": -1.0}])
def test_budget_rejects_bad_hyperparameters(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        budget_regularizer(t(0.0), t(0.0), **kwargs)


# --- properties --------------------------------------------------------------------------

logp = st.floats(-200.0, 0.0, allow_nan=False)
batches = st.integers(1, 6).flatmap(lambda b: st.tuples(*[st.lists(logp, min_size=b, max_size=b)] * 5))


@settings(deadline=None)
@given(batches, st.floats(0.01, 2.0))
def test_ipo_finite_and_gradient_sign_below_target(batch, beta):
    pc, pr, rc, rr = (t(*v) for v in batch[:4])
    loss = ipo_loss(pc, pr, rc, rr, beta=beta)
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    below = (pc - rc - pr + rr).detach() < 1 / (2 * beta)
    assert (pc.grad[below] <= 0).all() and (pr.grad[below] >= 0).all()
    assert (pc.grad[~below] >= 0).all() and (pr.grad[~below] <= 0).all()


@settings(deadline=None)
@given(batches, st.floats(0.01, 5.0), st.floats(0.0, 1.0))
def test_slic_finite_and_gradient_sign(batch, delta, lam):
    pc, pr, tgt = (t(*v) for v in batch[:3])
    loss = slic_loss(pc, pr, tgt, delta=delta, lam=lam)
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert (pc.grad <= 0).all() and (pr.grad >= 0).all() and (tgt.grad <= 0).all()


@settings(deadline=None)
@given(batches, st.floats(0.001, 1.0))
def test_hinge_norm_finite_nonnegative_and_gradient_sign(batch, gamma):
    pc, pr, rc, rr = (t(*v) for v in batch[:4])
    loss = hinge_norm_loss(pc, pr, rc, rr, gamma=gamma)
    assert torch.isfinite(loss).all() and (loss >= 0).all()
    loss.sum().backward()
    assert (pc.grad <= 0).all() and (pr.grad >= 0).all()


@settings(deadline=None)
@given(batches, st.floats(0.0, 10.0), st.floats(0.0, 5.0))
def test_budget_finite_nonnegative_and_gradient_sign(batch, budget, lam):
    pc, rc = t(*batch[0]), t(*batch[2])
    loss = budget_regularizer(pc, rc, budget=budget, lam=lam)
    assert torch.isfinite(loss).all() and (loss >= 0).all()
    loss.sum().backward()
    assert (pc.grad <= 0).all()
    # Zero exactly when the chosen log-prob is within budget of the reference.
    within = (rc - pc).detach() <= budget
    assert (loss.detach()[within] == 0).all()


@settings(deadline=None)
@given(batches, st.floats(0.01, 2.0))
def test_dpo_finite_and_gradient_sign(batch, beta):
    pc, pr, rc, rr = (t(*v) for v in batch[:4])
    loss = dpo_loss(pc, pr, rc, rr, beta=beta)
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert (pc.grad <= 0).all() and (pr.grad >= 0).all()
    assert math.isfinite(pc.grad.sum().item())
