"""Plots logged with a run: selection statistics and the SFT-vs-aligned reward distribution."""

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


def selection_histograms(pairs_per_prompt: list[int], reward_gaps: list[float], path: Path, strategy: str) -> Path:
    """Pairs kept per prompt and the chosen − rejected reward gaps, side by side, as PNG at `path`."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=100)
    top = max(pairs_per_prompt, default=0)
    left.hist(pairs_per_prompt, bins=[x - 0.5 for x in range(top + 2)])
    left.set_xlabel("pairs kept per prompt")
    left.set_ylabel("prompts")
    right.hist(reward_gaps, bins=20)
    right.set_xlabel("reward gap (chosen − rejected)")
    right.set_ylabel("pairs")
    fig.suptitle(f"Selection: {strategy}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def reward_vs_kl(history: list[dict], path: Path) -> Path:
    """PPO's frontier: each step's mean reward against its KL to the reference, coloured by step,
    with the reward curve per step beside it, as PNG at `path`."""
    steps = [h["step"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=100)
    points = left.scatter([h["kl"] for h in history], [h["reward_mean"] for h in history], c=steps, cmap="viridis")
    left.plot([h["kl"] for h in history], [h["reward_mean"] for h in history], color="grey", alpha=0.4)
    left.set_xlabel("KL to the reference (nats per sequence)")
    left.set_ylabel("rollout reward (mean)")
    fig.colorbar(points, ax=left, label="PPO step")
    right.plot(steps, [h["reward_mean"] for h in history], label="reward")
    right.plot(steps, [h["kl"] for h in history], label="KL")
    right.set_xlabel("PPO step")
    right.legend()
    fig.suptitle("PPO: reward against KL")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
