"""The end-of-run summary: summary.json and the table printed to the user."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from urllib.parse import urlparse

from rayalign.redaction import redact_secrets


def build_summary(run_dir: Path, nodes: list, manifests: dict[str, dict], tracker) -> dict:
    """Summary of a finished run: every node's rows and seconds, where the outputs and the MLflow
    run are, and what each stage adds (Stage.summary; a later round's entries replace earlier ones,
    and `rounds` keeps each round's, [{round, pairs, aligned_reward, win_rate, kl, ...}, ...]).
    Secrets are redacted (rayalign.redaction): the summary is printed and written to summary.json."""
    added: dict = {}
    rounds: dict[int, dict] = {}
    for node in nodes:
        if node.stage.summary is not None:
            entries = node.stage.summary(run_dir / node.id, manifests[node.id]["metrics"])
            added.update(entries)
            if node.stage.per_round:
                rounds.setdefault(node.round, {"round": node.round}).update(entries)
    return redact_secrets({
        **added,
        **({"rounds": list(rounds.values())} if rounds else {}),
        "stage_seconds": {node: round(m["seconds"], 2) for node, m in manifests.items()},
        "stage_rows": {node: m["rows"] for node, m in manifests.items()},
        "run_dir": str(run_dir),
        "outputs": {node: str(run_dir / node) for node in manifests},
        "mlflow_run_id": tracker.run_id,
        "mlflow_experiment_id": tracker.experiment_id,
        "tracking_uri": tracker.display_uri,
    })


def write_summary(run_dir: Path, summary: dict) -> Path:
    path = run_dir / "summary.json"
    path.write_text(json.dumps(summary, indent=2))
    return path


def mlflow_ui_hint(summary: dict) -> str:
    """The command that opens the MLflow UI on this run, or the run's URL on a server. The UI
    listens on 127.0.0.1 only: it serves every run and artifact of the store to whoever reaches it."""
    uri = summary["tracking_uri"]
    route = f"#/experiments/{summary['mlflow_experiment_id']}/runs/{summary['mlflow_run_id']}"
    if urlparse(uri).scheme in ("http", "https"):
        return f"open {uri.rstrip('/')}/{route}"
    python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else sys.executable
    return f"{python} -m mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000   # then open http://127.0.0.1:5000/{route}"


def format_summary(summary: dict) -> str:
    """Human-readable summary table."""
    lines = ["", "stage        rows      seconds", "-----------  --------  -------"]
    for stage, seconds in summary["stage_seconds"].items():
        lines.append(f"{stage:<11}  {summary['stage_rows'][stage]:>8}  {seconds:>7.1f}")
    pairs = f"preference pairs: {summary['pairs']}" if "pairs" in summary else ""
    if "win_rate" not in summary:
        lines += ["", pairs, "not evaluated (evaluate.enabled=false)"]
    else:
        lines += [
            "",
            f"held-out prompts: {summary['heldout_prompts']}" + (f"   {pairs}" if pairs else ""),
            "policy     mean gold reward",
            f"SFT        {summary['sft_reward']:+.4f}",
            f"aligned    {summary['aligned_reward']:+.4f}",
            f"win rate of aligned over SFT: {summary['win_rate']:.3f}",
            "mean per-sequence KL(aligned || reference): " + (
                f"{summary['kl']:.3f} nats" if summary["kl"] is not None
                else "not estimated (evaluate.temperature/top_p != 1)"),
        ]
    if len(summary.get("rounds", [])) > 1 and "win_rate" in summary:
        lines += ["", "round  pairs  aligned reward  win rate  KL"]
        for r in summary["rounds"]:
            kl = f"{r['kl']:.3f}" if r.get("kl") is not None else "-"
            lines.append(f"{r['round']:>5}  {r.get('pairs', '-'):>5}  {r['aligned_reward']:>+14.4f}  "
                         f"{r['win_rate']:>8.3f}  {kl}")
    if "rm_heldout_accuracy" in summary:
        lines.append(f"reward model on held-out pairs: accuracy {summary['rm_heldout_accuracy']:.3f}"
                     + (f", agreement with the gold reward {summary['rm_gold_agreement']:.3f}"
                        if "rm_gold_agreement" in summary else ""))
    lines += [
        "",
        f"run directory: {summary['run_dir']}",
        f"aligned model: {summary['aligned_model']}",
        f"MLflow run:    {summary['mlflow_run_id']}",
        f"MLflow UI:     {mlflow_ui_hint(summary)}",
    ]
    return "\n".join(lines)
