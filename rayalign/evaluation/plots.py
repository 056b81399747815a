"""The SFT-vs-aligned reward distribution plot."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend first: no display on servers)


def reward_histogram(sft: list[float], aligned: list[float], path: Path, reward_name: str) -> Path:
    """Overlaid histograms of gold rewards, saved as PNG at `path`."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    lo, hi = min(sft + aligned), max(sft + aligned)
    bins = [lo + (hi - lo) * i / 20 for i in range(21)] if hi > lo else 10
    ax.hist(sft, bins=bins, alpha=0.55, label=f"SFT (mean {sum(sft) / len(sft):.3f})")
    ax.hist(aligned, bins=bins, alpha=0.55, label=f"aligned (mean {sum(aligned) / len(aligned):.3f})")
    ax.set_xlabel(f"gold reward ({reward_name})")
    ax.set_ylabel("responses")
    ax.set_title("Held-out reward distribution")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
