"""Running a run: connect to Ray, then each node of the plan in order, reusing complete ones,
tracking each and writing the summary."""

from __future__ import annotations

import os
import secrets
import socket
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from rayalign.config import RunConfig
from rayalign.kv_cache import check_kv_cache
from rayalign.models import require_reward_model, resolve_model
from rayalign.pipeline.context import RunContext, StageError
from rayalign.pipeline.graph import cache_keys, inputs, plan
from rayalign.pipeline.resources import ensure_resources
from rayalign.pipeline.stage import Stage
from rayalign.pipeline.stages import PIPELINE, select
from rayalign.pipeline.store import StageStore, exclusive, writable_run_dir
from rayalign.pipeline.summary import build_summary, write_summary
from rayalign.plots import reward_and_kl_by_round, save
from rayalign.progress import Progress
from rayalign.redaction import install_log_redaction, redact_secrets
from rayalign.tracking import Tracker


LOCAL_HOST = "127.0.0.1"
ROUNDS_PLOT = "rounds.png"


class RayConnectError(ConnectionError):
    """No Ray cluster at the given address."""


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


def private_ray_token() -> Path | None:
    """Create Ray's default token file (~/.ray/auth_token) readable by its owner only, where a
    local Ray would otherwise write it with the process's umask (0644: every user of the host
    could read it and run jobs on the cluster). Ray then finds the token and uses it. A token file
    that exists already is left as it is, with a warning when others can read it. Nothing is done
    where the token comes from elsewhere (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH) or auth is off."""
    if (os.environ.get("RAY_AUTH_MODE", "token").lower() != "token" or os.environ.get("RAY_AUTH_TOKEN")
            or os.environ.get("RAY_AUTH_TOKEN_PATH")):
        return None
    path = Path.home() / ".ray" / "auth_token"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            warnings.warn(f"Ray's token {path} is readable by other users of this host, who could run jobs on "
                          f"the cluster with it: chmod 600 {path}", stacklevel=2)
        return path
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))  # Ray's own token format
    return path


def connect_ray(address: str | None) -> None:
    """Join the cluster at `address`, or start/join a local Ray when None. A Ray started here keeps
    Ray's token authentication (on by default for a new local cluster; RAY_AUTH_MODE=disabled turns
    it off), serves its dashboard and Jobs API on 127.0.0.1 only, and runs its workers at niceness 0
    (RAY_worker_niceness; Ray's default is 15)."""
    import ray

    if address:
        check_reachable(address)
    if ray.is_initialized():
        return
    if not (address or os.environ.get("RAY_ADDRESS")):
        private_ray_token()
        # Ray runs its workers at niceness 15, below its own services. Where the workers are the
        # compute, each wake-up of the driver or a Ray service then preempts a thread of an OpenMP
        # team and stalls the whole team: the sample stage's generate of 64 prompts took 97-100 s at
        # niceness 15 and 81-85 s at 0 on 2 cores.
        os.environ.setdefault("RAY_worker_niceness", "0")
    try:
        # dashboard_host applies only when this call starts Ray; explicit so that no Ray default can
        # open the dashboard, which runs jobs for whoever reaches it, to the network.
        ray.init(address=address, log_to_driver=True, logging_level="WARNING", dashboard_host=LOCAL_HOST)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or os.environ.get("RAY_ADDRESS") or "a local instance"
        raise RayConnectError(
            f"cannot reach a Ray cluster at {where}: {exc}. Start one with `ray start --head`, "
            "fix --address (e.g. 127.0.0.1:6379 or ray://HOST:10001), or drop --address to run locally"
        ) from None


def _track(ctx: RunContext, manifest: dict) -> None:
    ctx.tracker.log_metrics(manifest["metrics"], f"{ctx.node.id}/")
    if ctx.node.stage.track is not None:
        ctx.node.stage.track(ctx, ctx.store.path(ctx.node.id))


def _check_models(cfg: RunConfig) -> str:
    """The policy's local checkpoint. Every model the config names is checked first, reward models
    for a sequence-classification head, so that a wrong path fails before any stage runs."""
    policy = resolve_model(cfg.model.policy, "model.policy")
    check_kv_cache(policy, "model.policy", cfg)  # SFT, evaluation and PPO engines share its shape
    for path, key in ((cfg.model.reference, "model.reference"),
                      (cfg.reward_model.base_model if cfg.reward_model.enabled else None, "reward_model.base_model")):
        if path:
            resolve_model(path, key)
    for path, key in ((cfg.score.reward_model_path if cfg.score.reward == "reward_model" else None,
                       "score.reward_model_path"),
                      (cfg.select.judge_model_path if select.judged(cfg) else None, "select.judge_model_path"),
                      (cfg.evaluate.gold_reward_model_path if cfg.evaluate.gold_reward == "reward_model" else None,
                       "evaluate.gold_reward_model_path")):
        if path:
            require_reward_model(resolve_model(path, key), key)
    return policy


def run_pipeline(cfg: RunConfig, run_dir: Path, tracking_uri: str | None = None,
                 log: Callable[[str], None] = print, stages: Sequence[Stage] | None = None,
                 progress: Callable[[str], None] | None = None, track_only: bool = False) -> dict:
    """Run every incomplete node of the plan in order and return the summary (also written as
    summary.json). `stages` defaults to rayalign.pipeline.stages.PIPELINE; cfg.rounds repeats its
    per-round stages. `progress` gets the running stage's live progress line (rayalign.progress)
    twice a second, and '' when the stage ends. What it records (config.yaml, summary.json, MLflow,
    log records) has its secrets redacted (rayalign.redaction). One run at a time works in a run
    directory (store.exclusive). With `track_only` (`rayalign track`), nothing is computed: a run
    directory whose every stage is complete is logged to MLflow (a fresh MLflow run when the one on
    record lost its store midway), without Ray."""
    install_log_redaction()
    run_dir = writable_run_dir(run_dir)
    with exclusive(run_dir):
        return _run_locked(cfg, run_dir, tracking_uri, log, stages, progress, track_only)


def _run_locked(cfg: RunConfig, run_dir: Path, tracking_uri: str | None, log: Callable[[str], None],
                stages: Sequence[Stage] | None, progress: Callable[[str], None] | None,
                track_only: bool) -> dict:
    policy = _check_models(cfg)
    if not track_only:
        connect_ray(cfg.ray.address)
    nodes = plan(cfg, PIPELINE if stages is None else stages)
    keys = cache_keys(nodes, cfg)
    store = StageStore(run_dir)
    tracker = Tracker(cfg, run_dir, tracking_uri)
    # Written once the run can start: a run refused earlier leaves the directory's config as it was.
    (run_dir / "config.yaml").write_text(yaml.safe_dump(redact_secrets(cfg.model_dump(mode="json")), sort_keys=False))
    run = RunContext(cfg, run_dir, store, policy, tracker, tuple(nodes), keys,
                     progress=Progress.start() if progress else Progress())
    manifests = {}
    try:
        for number, node in enumerate(nodes, 1):
            ctx, head = run.at(node), f"[{number}/{len(nodes)}] {node.id}"
            if store.is_complete(node.id, keys[node.id]):
                manifests[node.id] = store.manifest(node.id)
                log(f"{head}: complete, reusing {store.path(node.id)}")
                if not tracker.resumed:
                    _track(ctx, manifests[node.id])
                continue
            if track_only:
                raise StageError(f"{node.id} has not completed in {run_dir}: `rayalign track` logs a finished run; "
                                 "finish it with the `rayalign run` command that started it")
            ensure_resources(node.stage.bundles(cfg), cfg.ray.resource_wait_s, node.id, node.stage.needs_set_by)
            log(f"{head}: running")
            start = time.perf_counter()
            with store.writing(node.id, keys[node.id] if node.stage.resumable else None) as partial:
                with run.progress.shown(progress, head):
                    metrics = node.stage.run(ctx, partial)
                manifest = {"config_hash": keys[node.id], "seconds": time.perf_counter() - start,
                            "rows": int(metrics.get("rows", 0)), "metrics": metrics,
                            "inputs": {n.id: keys[n.id] for n in inputs(node, nodes[:number - 1])}}
                if node.stage.starts_from_policy:
                    manifest["policy"] = ctx.latest_policy()  # the checkpoint it started from
                store.commit(node.id, partial, manifest)
            manifests[node.id] = store.manifest(node.id)
            _track(ctx, manifests[node.id])
            log(f"{head}: done in {manifest['seconds']:.1f}s, {manifest['rows']} rows")
        summary = build_summary(run_dir, nodes, manifests, tracker)
        path = write_summary(run_dir, summary)
        tracker.log_artifact(path)
        tracker.log_artifact(run_dir / "config.yaml")
        tracker.log_metrics(summary_metrics(summary))
        track_rounds(tracker, run_dir, summary.get("rounds", []))
    except BaseException:
        tracker.end("FAILED")
        raise
    tracker.end()
    return summary


def summary_metrics(summary: dict) -> dict[str, float]:
    """The summary's numbers that go to MLflow as run metrics (what the stages added: rewards, win
    rate, KL, pairs, reward-model agreement)."""
    return {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def track_rounds(tracker: Tracker, run_dir: Path, rounds: list[dict]) -> None:
    """Each round's summary entries as MLflow metrics `rounds/<name>` at step = round, and, from two
    rounds on, the plot of held-out reward and KL by round (rounds.png in the run directory)."""
    for entry in rounds:
        tracker.log_metrics(summary_metrics({k: v for k, v in entry.items() if k != "round"}), "rounds/",
                            step=entry["round"])
    if len(rounds) > 1 and "aligned_reward" in rounds[0]:
        figure = reward_and_kl_by_round(rounds)
        save(figure, run_dir / ROUNDS_PLOT)
        tracker.log_figure(figure, ROUNDS_PLOT)
