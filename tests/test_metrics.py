import pytest

from rayalign.evaluation.metrics import mean, win_rate


def test_win_rate_averages_samples_per_prompt_and_halves_ties():
    # a: aligned mean 0.3 vs SFT 0.2 → win; b: 0.0 vs 0.0 → tie (½); c: −0.5 vs 0.5 → loss. (1 + ½ + 0)/3.
    ids = ["a", "a", "b", "c"]
    assert win_rate(ids, [0.5, 0.1, 0.0, -0.5], [0.2, 0.2, 0.0, 0.5]) == pytest.approx(0.5)


def test_empty_inputs_are_errors():
    with pytest.raises(ValueError):
        win_rate([], [], [])
    with pytest.raises(ValueError):
        mean([])
