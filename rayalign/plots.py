"""Plots of a run: selection statistics, the SFT-vs-aligned reward distribution, PPO's reward
against KL, held-out reward and KL by round. Each is a matplotlib Figure built from a stage's
output: the stage saves it as PNG in its folder and logs it to MLflow with log_figure."""

from __future__ import annotations

from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend first: no display on servers)


def save(fig: Figure, path: Path) -> Path:
    """`fig` as PNG at `path`, then closed."""
    fig.savefig(path)
    plt.close(fig)
    return path


def reward_histogram(sft: list[float], aligned: list[float], reward_name: str) -> Figure:
    """Overlaid histograms of gold rewards."""
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
    return fig


def selection_histograms(pairs_per_prompt: list[int], reward_gaps: list[float], strategy: str) -> Figure:
    """Pairs kept per prompt and the chosen − rejected reward gaps, side by side."""
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
    return fig


def reward_vs_kl(history: list[dict]) -> Figure:
    """PPO's frontier: each step's mean reward against its KL to the reference, coloured by step,
    with the reward curve per step beside it."""
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
    return fig


def reward_and_kl_by_round(rounds: list[dict]) -> Figure:
    """Iterative rounds: the held-out gold reward of each round's policy (SFT as round 0) and its
    KL to the initial reference."""
    numbers = [r["round"] for r in rounds]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=100)
    left.plot([0] + numbers, [rounds[0]["sft_reward"]] + [r["aligned_reward"] for r in rounds], marker="o")
    left.set_xlabel("round (0: SFT)")
    left.set_ylabel("held-out gold reward (mean)")
    kls = [(n, r["kl"]) for n, r in zip(numbers, rounds) if r.get("kl") is not None]
    right.plot([n for n, _ in kls], [kl for _, kl in kls], marker="o", color="tab:orange")
    right.set_xlabel("round")
    right.set_ylabel("KL to the initial reference (nats)")
    left.set_xticks([0] + numbers)
    right.set_xticks(numbers)
    fig.suptitle("Iterative rounds")
    fig.tight_layout()
    return fig
