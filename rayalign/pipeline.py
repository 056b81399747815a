"""The stage graph: cache keys, resume, running stages in order, tracking and the summary."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from rayalign import chain_stages, stages
from rayalign.config import RunConfig, fingerprint
from rayalign.context import RunContext
from rayalign.data.store import StageStore
from rayalign.models import resolve_model
from rayalign.resources import ensure_resources, stage_bundles
from rayalign.summary import build_summary, write_summary
from rayalign.tracking import Tracker

# Every stage in run order; a run executes the active ones (active_stages).
STAGES = ("prompts", "sft", "label_sample", "label", "reward_model", "sample", "reference", "score", "select",
          "train", "evaluate")

# The stages whose outputs a stage reads (when active): its cache key chains theirs.
INPUTS = {
    "prompts": (),
    "sft": (),
    "label_sample": ("prompts", "sft"),
    "label": ("label_sample",),
    "reward_model": ("label", "sft"),
    "sample": ("prompts", "sft"),
    "reference": ("sample",),
    "score": ("reference", "reward_model"),
    "select": ("score", "reward_model"),
    "train": ("select",),
    "evaluate": ("prompts", "train"),
}

SUMMARY_METRICS = ("sft_reward", "aligned_reward", "win_rate", "kl", "pairs", "rm_gold_agreement")

RUNNERS = {**stages.RUNNERS, **chain_stages.RUNNERS}
TRACKERS = {**stages.TRACKERS, **chain_stages.TRACKERS}


class RayConnectError(ConnectionError):
    """No Ray cluster at the given address."""


def active_stages(cfg: RunConfig) -> tuple[str, ...]:
    """The stages this config runs, in order: SFT and the reward-model chain are optional."""
    off = set()
    if not cfg.sft.enabled:
        off.add("sft")
    if not cfg.reward_model.enabled:
        off |= {"label_sample", "label", "reward_model"}
    elif cfg.reward_model.data != "label":
        off |= {"label_sample", "label"}
    return tuple(s for s in STAGES if s not in off)


def stage_keys(cfg: RunConfig) -> dict[str, str]:
    """Cache key of every active stage: its own settings chained with its inputs' keys.

    Resource settings (actor pools, workers) are left out: they change how a stage runs,
    not what it produces.
    """
    def own(section) -> dict:
        return section.model_dump(mode="json", exclude={"resources"})

    parts = {
        "prompts": [own(cfg.data), cfg.model.policy],
        "sft": [own(cfg.sft), own(cfg.data), cfg.model.policy],
        "label_sample": [own(cfg.sample), own(cfg.label), cfg.model.policy, cfg.model.dtype],
        "label": [own(cfg.label)],
        "reward_model": [own(cfg.reward_model), cfg.model.policy],
        "sample": [own(cfg.sample), cfg.model.policy, cfg.model.dtype],
        "reference": [own(cfg.reference), cfg.model.reference, cfg.model.dtype, cfg.needs_reference()],
        "score": [own(cfg.score)],
        "select": [own(cfg.select)],
        "train": [own(cfg.train), cfg.model.policy],
        "evaluate": [own(cfg.evaluate), own(cfg.sample), own(cfg.model)],
    }
    keys: dict[str, str] = {}
    for stage in active_stages(cfg):
        inputs = {name: keys[name] for name in INPUTS[stage] if name in keys}
        keys[stage] = fingerprint(stage, inputs, parts[stage])
    return keys


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast when nothing listens at a host:port Ray address (ray.init retries for minutes)."""
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", "local" and other forms are Ray's to resolve
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise RayConnectError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}). Start one with "
            "`ray start --head --port=6379`, fix --address / ray.address, or drop it to run locally"
        ) from None


def connect_ray(address: str | None) -> None:
    """Join the cluster at `address`, or start/join a local Ray when None."""
    import ray

    if address:
        check_reachable(address)
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, log_to_driver=True, logging_level="WARNING")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or os.environ.get("RAY_ADDRESS") or "a local instance"
        raise RayConnectError(
            f"cannot reach a Ray cluster at {where}: {exc}. Start one with `ray start --head`, "
            "fix --address (e.g. 127.0.0.1:6379 or ray://HOST:10001), or drop --address to run locally"
        ) from None


def _track(ctx: RunContext, stage: str, manifest: dict) -> None:
    ctx.tracker.log_metrics(manifest["metrics"], f"{stage}/")
    if stage in TRACKERS:
        TRACKERS[stage](ctx, ctx.store.path(stage))


def run_pipeline(cfg: RunConfig, run_dir: Path, tracking_uri: str | None = None,
                 log: Callable[[str], None] = print) -> dict:
    """Run every incomplete stage in order and return the summary (also written as summary.json)."""
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    policy = resolve_model(cfg.model.policy)
    for name in (cfg.model.reference, cfg.reward_model.base_model if cfg.reward_model.enabled else None):
        if name:
            resolve_model(name)  # fail before any stage runs
    connect_ray(cfg.ray.address)
    store = StageStore(run_dir)
    tracker = Tracker(cfg, run_dir, tracking_uri)
    keys = stage_keys(cfg)
    ctx = RunContext(cfg, run_dir, store, policy, tracker, keys)
    active = active_stages(cfg)
    manifests = {}
    try:
        for number, stage in enumerate(active, 1):
            head = f"[{number}/{len(active)}] {stage}"
            if store.is_complete(stage, keys[stage]):
                manifests[stage] = store.manifest(stage)
                log(f"{head}: complete, reusing {store.path(stage)}")
                if not tracker.resumed:
                    _track(ctx, stage, manifests[stage])
                continue
            ensure_resources(stage_bundles(cfg, stage), cfg.ray.resource_wait_s, stage)
            log(f"{head}: running")
            start = time.perf_counter()
            with store.writing(stage) as partial:
                metrics = RUNNERS[stage](ctx, partial)
                manifest = {"config_hash": keys[stage], "seconds": time.perf_counter() - start,
                            "rows": int(metrics.get("rows", 0)), "metrics": metrics,
                            "inputs": {name: keys[name] for name in INPUTS[stage] if name in keys}}
                store.commit(stage, partial, manifest)
            manifests[stage] = store.manifest(stage)
            _track(ctx, stage, manifests[stage])
            log(f"{head}: done in {manifest['seconds']:.1f}s, {manifest['rows']} rows")
        summary = build_summary(run_dir, manifests, tracker)
        path = write_summary(run_dir, summary)
        tracker.log_artifact(path)
        tracker.log_artifact(run_dir / "config.yaml")
        tracker.log_metrics({k: v for k, v in summary.items() if k in SUMMARY_METRICS and v is not None})
    except BaseException:
        tracker.end("FAILED")
        raise
    tracker.end()
    return summary
