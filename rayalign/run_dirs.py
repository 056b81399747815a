"""Reading run directories back: `rayalign show RUN_DIR` and `rayalign runs [ROOT]`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from rayalign.pipeline.store import MANIFEST
from rayalign.pipeline.summary import format_summary

HEADLINE = ("aligned_reward", "sft_reward", "win_rate", "kl")


def run_state(run_dir: Path) -> dict:
    """What a run directory holds: its name, status ('complete' when its summary is newer than the
    config it last ran with, else 'incomplete'), the stages with outputs, and the summary if any."""
    run_dir = Path(run_dir)
    config, summary_file = run_dir / "config.yaml", run_dir / "summary.json"
    if not config.is_file():
        raise FileNotFoundError(f"{run_dir} is not a rayalign run directory (no config.yaml); list runs with "
                                "`rayalign runs [ROOT]`")
    stages = sorted((p.parent.name for p in run_dir.glob(f"*/{MANIFEST}")),
                    key=lambda name: (run_dir / name / MANIFEST).stat().st_mtime)
    complete = summary_file.is_file() and summary_file.stat().st_mtime >= config.stat().st_mtime
    return {"run_dir": str(run_dir.resolve()), "name": (yaml.safe_load(config.read_text()) or {}).get("name"),
            "status": "complete" if complete else "incomplete", "stages": stages,
            "updated": max(p.stat().st_mtime for p in [config, *run_dir.glob(f"*/{MANIFEST}")]),
            "summary": json.loads(summary_file.read_text()) if complete else None}


def show(run_dir: Path) -> str:
    """The summary of a finished run and where everything is; for an unfinished one, the stages
    done so far and how to resume."""
    state = run_state(run_dir)
    if state["summary"] is not None:
        return format_summary(state["summary"]) + f"\nconfig:        {Path(state['run_dir']) / 'config.yaml'}"
    done = ", ".join(state["stages"]) or "none"
    return (f"run {state['name']!r} in {state['run_dir']}: incomplete\nstages with outputs: {done}\n"
            f"resume with: rayalign run {Path(state['run_dir']) / 'config.yaml'} --run-dir {state['run_dir']}")


def list_runs(root: Path) -> str:
    """One line per run directory under `root`: name, status, headline metrics, last update."""
    root = Path(root)
    states = [run_state(config.parent) for config in sorted(root.glob("*/config.yaml"))]
    if not states:
        return f"no runs under {root} (a run directory holds config.yaml; `rayalign run` writes them to runs/)"
    lines = [f"{'run':<24} {'status':<10} {'aligned':>8} {'SFT':>8} {'win':>6} {'KL':>7}  updated",
             f"{'-' * 24} {'-' * 10} {'-' * 8} {'-' * 8} {'-' * 6} {'-' * 7}  {'-' * 16}"]
    for state in sorted(states, key=lambda s: s["updated"], reverse=True):
        summary = state["summary"] or {}
        cells = [f"{summary[k]:.3f}" if isinstance(summary.get(k), float) else "-" for k in HEADLINE]
        updated = time.strftime("%Y-%m-%d %H:%M", time.localtime(state["updated"]))
        lines.append(f"{Path(state['run_dir']).name:<24} {state['status']:<10} {cells[0]:>8} {cells[1]:>8} "
                     f"{cells[2]:>6} {cells[3]:>7}  {updated}")
    return "\n".join(lines)
