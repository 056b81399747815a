"""Seeds derived per item, so results do not depend on batching, ordering or actor count."""

import hashlib


def derived_seed(seed: int, stream: str, key: str) -> int:
    """A 31-bit seed from a base seed, a random stream and an item key (e.g. a prompt id).

    `stream` names what the randomness is for ("sample", "label_sample", "evaluate", "rso",
    "label"): two uses with equal base seeds (every seed defaults to 0) must not share draws,
    or, say, the label stage's responses would be the very ones rejection sampling selects from.
    """
    return int.from_bytes(hashlib.sha256(f"{seed}:{stream}:{key}".encode()).digest()[:4], "big") & 0x7FFFFFFF
