"""Validation shared by every selection strategy."""

import math
from collections.abc import Sequence


def checked_rewards(rewards: Sequence[float]) -> list[float]:
    """Return rewards as floats, refusing NaN or infinite values with a clear error."""
    values = [float(r) for r in rewards]
    bad = [i for i, r in enumerate(values) if not math.isfinite(r)]
    if bad:
        raise ValueError(
            f"rewards must be finite; candidates {bad} have {[values[i] for i in bad]}. "
            "Check the reward stage's output (a reward model returning NaN usually means "
            "an empty or over-long input)."
        )
    return values
