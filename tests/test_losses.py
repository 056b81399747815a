import math

import pytest
import torch

from rayalign.losses import dpo_loss


def t(*values):
    return torch.tensor(values, dtype=torch.float64, requires_grad=True)


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


@pytest.mark.parametrize("kwargs", [{"beta": 0.0}, {"beta": -1.0}, {"label_smoothing": 0.5}])
def test_dpo_rejects_bad_hyperparameters(kwargs):
    with pytest.raises(ValueError):
        dpo_loss(t(0.0), t(0.0), t(0.0), t(0.0), **kwargs)
