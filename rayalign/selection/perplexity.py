"""Perplexity filtering of candidates before pairing (Kutalev & Markoff 2024)."""

import math
from collections.abc import Sequence


def perplexity_filter(
    logps: Sequence[float],
    num_tokens: Sequence[int],
    min_ppl: float | None,
    max_ppl: float | None,
) -> list[bool]:
    """Keep-mask: True where min_ppl ≤ ppl ≤ max_ppl, with ppl = exp(−logp / num_tokens).

    logps are summed response log-probs under the policy; num_tokens the response lengths.
    Either bound may be None (no bound on that side); both None keeps everything. Dropping
    candidates the policy finds unlikely (high ppl) keeps pairs on its own distribution.
    Raises ValueError for num_tokens ≤ 0, non-finite logps, mismatched lengths or bad bounds.
    """
    if len(logps) != len(num_tokens):
        raise ValueError(f"logps and num_tokens differ in length: {len(logps)} vs {len(num_tokens)}")
    for name, bound in (("min_ppl", min_ppl), ("max_ppl", max_ppl)):
        if bound is not None and not bound > 0:
            raise ValueError(f"{name} must be > 0 or None, got {bound}")
    if min_ppl is not None and max_ppl is not None and min_ppl > max_ppl:
        raise ValueError(f"min_ppl ({min_ppl}) is above max_ppl ({max_ppl})")
    keep = []
    for i, (lp, n) in enumerate(zip(logps, num_tokens)):
        lp = float(lp)
        if n <= 0:
            raise ValueError(f"num_tokens must be > 0, candidate {i} has {n}")
        if not math.isfinite(lp):
            raise ValueError(f"logps must be finite, candidate {i} has {lp}")
        x = -lp / n
        ppl = math.exp(x) if x < 700 else math.inf  # exp overflows a float near 709.8
        keep.append((min_ppl is None or ppl >= min_ppl) and (max_ppl is None or ppl <= max_ppl))
    return keep
