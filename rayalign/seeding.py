"""Seeds derived per item, so results do not depend on batching, ordering or actor count."""

import hashlib


def derived_seed(seed: int, key: str) -> int:
    """A 31-bit seed from a base seed and an item key (e.g. a prompt id)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:4], "big") & 0x7FFFFFFF
