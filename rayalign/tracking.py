"""MLflow tracking of a pipeline run: params, metrics, datasets and artifacts.

One MLflow run per run directory and config: re-running the same command resumes the
same MLflow run; a changed config starts a new one. The default store is a SQLite
database beside the run directories, with artifacts in a folder next to it. Params, tags,
dataset sources and mlflow_run.json are recorded with their secrets redacted
(rayalign.redaction); the connection itself uses the real tracking URI.

Tracking never costs computed work: a store that stops answering mid-run gets one warning, the
run goes on with tracking off, mlflow_run.json marks the MLflow run as lost, and `rayalign track
RUN_DIR` (or the same `rayalign run` again) logs the whole run directory into a fresh MLflow run.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rayalign.config import RunConfig, fingerprint, flatten, flatten_dict
from rayalign.redaction import redact_secrets

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

RUN_FILE = "mlflow_run.json"
MAX_PARAM_CHARS = 6000  # MLflow refuses longer param values


def recorded_params(params: dict[str, Any]) -> dict[str, str]:
    """Flat params as MLflow stores them: strings, secrets redacted (before the cut, so no part of
    a secret survives it), cut to MAX_PARAM_CHARS."""
    return {k: redact_secrets(str(v))[:MAX_PARAM_CHARS] for k, v in params.items()}


def default_tracking_uri(run_root: Path) -> str:
    """sqlite:/// store under the run root."""
    return f"sqlite:///{(run_root / 'mlflow.db').resolve()}"


def tracking_target(cfg: RunConfig, run_root: Path, tracking_uri: str | None = None) -> tuple[str, str]:
    """(tracking URI, experiment name) as MLflow users expect: the command line's --tracking-uri, then
    tracking.uri, then MLFLOW_TRACKING_URI, then a SQLite store under the run root; tracking.experiment,
    then MLFLOW_EXPERIMENT_NAME, then "rayalign"."""
    uri = tracking_uri or cfg.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(run_root)
    return uri, cfg.tracking.experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or "rayalign"


class TrackingError(RuntimeError):
    """The tracking store does not answer as the run starts."""


def check_reachable(uri: str, display_uri: str) -> None:
    """For a tracking server (http/https), that something listens at its address: MLflow's own
    first request would retry for minutes before it failed."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=10).close()
    except OSError as e:
        raise TrackingError(
            f"no MLflow tracking server answers at {display_uri} ({e.strerror or e}): start it (e.g. `mlflow server "
            f"--host 127.0.0.1 --port {port}`), or point --tracking-uri, tracking.uri or MLFLOW_TRACKING_URI at "
            "one that runs (unset, runs are tracked in a SQLite file beside the run directory)") from None


def _tracking_errors() -> tuple[type[BaseException], ...]:
    import requests
    from mlflow.exceptions import MlflowException

    # OSError: a disk or socket error of a local store; MLflow wraps a server's failures.
    return MlflowException, requests.exceptions.RequestException, OSError


def _tolerant(method: Callable) -> Callable:
    """A Tracker method that, once the store has stopped answering, does nothing, and whose own
    tracking failure turns tracking off (Tracker.lose) instead of failing the run."""
    @functools.wraps(method)
    def call(self: Tracker, *args, **kwargs):
        if self.lost:
            return None
        try:
            return method(self, *args, **kwargs)
        except _tracking_errors() as e:
            self.lose(e)
            return None
    return call


class Tracker:
    """The MLflow run of one pipeline run. `uri` is the tracking URI it connects to (credentials
    included: PPO's workers log through it), `display_uri` the same with its secrets redacted, for
    everything shown or written. A store that does not answer when the run starts is an error
    (TrackingError); one that stops answering later turns tracking off (`lost`, see the module)."""

    lost = False

    def __init__(self, cfg: RunConfig, run_dir: Path, tracking_uri: str | None = None):
        import mlflow

        self.mlflow = mlflow
        self.run_dir = run_dir
        run_root = run_dir.parent
        self.uri, name = tracking_target(cfg, run_root, tracking_uri)
        self.display_uri = redact_secrets(self.uri)
        check_reachable(self.uri, self.display_uri)
        if self.display_uri != self.uri:
            # MLflow prints each run's URL, built from the raw URI, when the run ends.
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
        mlflow.set_tracking_uri(self.uri)
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            artifacts = (run_root / "mlartifacts").resolve().as_uri() if self.uri.startswith("sqlite:") else None
            experiment_id = mlflow.create_experiment(name, artifact_location=artifacts)
        else:
            experiment_id = experiment.experiment_id
        config_hash = fingerprint(cfg.model_dump(mode="json"))
        previous = self._previous_run(config_hash)
        self.resumed = previous is not None
        self.run = mlflow.start_run(run_id=previous, experiment_id=None if previous else experiment_id,
                                    run_name=None if previous else f"{cfg.name}-{config_hash[:6]}",
                                    log_system_metrics=cfg.tracking.system_metrics)
        self.run_id, self.experiment_id = self.run.info.run_id, self.run.info.experiment_id
        self.record = {"run_id": self.run_id, "config_hash": config_hash, "tracking_uri": self.display_uri}
        (run_dir / RUN_FILE).write_text(json.dumps(self.record))
        if not self.resumed:
            mlflow.log_params(recorded_params(flatten(cfg)))
            self.set_tag("rayalign.run_dir", str(run_dir.resolve()))

    def _previous_run(self, config_hash: str) -> str | None:
        file = self.run_dir / RUN_FILE
        if not file.is_file():
            return None
        saved = json.loads(file.read_text())
        if (saved.get("config_hash") != config_hash or saved.get("tracking_uri") != self.display_uri
                or saved.get("lost")):  # a run that lost its store midway is logged afresh, whole
            return None
        from mlflow.exceptions import MlflowException

        try:
            self.mlflow.get_run(saved["run_id"])
        except MlflowException:  # the store was deleted or moved: start afresh
            return None
        return saved["run_id"]

    def lose(self, error: BaseException) -> None:
        """Turn tracking off after `error`: warn once, and mark the MLflow run as lost in mlflow_run.json."""
        self.lost = True
        (self.run_dir / RUN_FILE).write_text(json.dumps({**self.record, "lost": True}))
        warnings.warn(f"MLflow at {self.display_uri} stopped answering ({type(error).__name__}: "
                      f"{redact_secrets(str(error))[:300]}); the run goes on without tracking and keeps "
                      f"everything in {self.run_dir}: log it later with `rayalign track {self.run_dir}`",
                      stacklevel=3)

    @_tolerant
    def log_metrics(self, metrics: dict[str, float], prefix: str = "", step: int | None = None) -> None:
        self.mlflow.log_metrics({f"{prefix}{k}": float(v) for k, v in metrics.items()}, step=step)

    @_tolerant
    def log_missing_steps(self, steps: list[tuple[int, dict[str, float]]], prefix: str = "") -> None:
        """(step, metrics) series into the active run as '<prefix><name>', but the steps the run already
        has (logged live by a training stage's workers), so neither a rerun nor a tracking outage
        during training leaves a step missing or twice."""
        if not steps:
            return
        probe = f"{prefix}{next(iter(steps[0][1]))}"
        run_id = self.mlflow.active_run().info.run_id
        have = {m.step for m in self.mlflow.MlflowClient().get_metric_history(run_id, probe)}
        for step, metrics in steps:
            if step not in have:
                self.log_metrics(metrics, prefix, step)

    @_tolerant
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if Path(path).is_dir():
            self.mlflow.log_artifacts(str(path), artifact_path)
        else:
            self.mlflow.log_artifact(str(path), artifact_path)

    @_tolerant
    def log_model(self, model_dir: Path, name: str, registered_name: str | None = None) -> str:
        """The HF checkpoint at `model_dir` as an MLflow transformers model (text generation) of the
        active run, registered under `registered_name` when given; returns its model id."""
        import importlib.metadata

        import mlflow.transformers

        # Pinned from this environment: MLflow would otherwise load the model to infer them.
        requirements = [f"{p}=={importlib.metadata.version(p)}" for p in ("transformers", "torch", "safetensors")]
        info = mlflow.transformers.log_model(str(model_dir), name=name, task="text-generation",
                                             pip_requirements=requirements, registered_model_name=registered_name)
        return info.model_id

    @_tolerant
    def log_figure(self, fig, artifact_file: str) -> None:
        """A matplotlib figure as an image artifact of the active run; the figure is closed."""
        import matplotlib.pyplot as plt

        self.mlflow.log_figure(fig, artifact_file)
        plt.close(fig)

    @_tolerant
    def log_dataset(self, table, name: str, source: Path, context: str, model_id: str | None = None) -> None:
        """Record a stage dataset as an MLflow input (lineage), with its schema and digest; with
        `model_id`, as the data that logged model was evaluated on."""
        import mlflow.data

        frame = table.to_pandas()
        # MLflow's schema inference rejects list columns; lineage needs only the scalar ones.
        scalar = [c for c in frame.columns if not str(table.schema.field(c).type).startswith("list")]
        dataset = mlflow.data.from_pandas(frame[scalar], source=redact_secrets(str(source.resolve())), name=name)
        from mlflow.entities import LoggedModelInput

        self.mlflow.log_input(dataset, context=context, model=LoggedModelInput(model_id) if model_id else None)

    @contextmanager
    def child_run(self, name: str, params: dict[str, Any], consumed: dict[str, str],
                  produced: dict[str, str]) -> Iterator[str]:
        """A nested run under the pipeline's run (e.g. one per training stage); yields its id.

        Its tags `rayalign.consumed.*` and `rayalign.produced.*` name the checkpoints and
        datasets it read and wrote: a run that consumed what another produced is its descendant.
        """
        run_id = self._start_child(name, params, consumed, produced)
        try:
            yield run_id
        finally:
            if run_id is not None:
                self._end_child()

    @_tolerant
    def _start_child(self, name: str, params: dict[str, Any], consumed: dict[str, str],
                     produced: dict[str, str]) -> str:
        run = self.mlflow.start_run(run_name=name, nested=True, experiment_id=self.experiment_id)
        self.mlflow.log_params(recorded_params(flatten_dict(params)))
        self.mlflow.set_tags(redact_secrets({"rayalign.stage": name,
                                             **{f"rayalign.consumed.{k}": v for k, v in consumed.items()},
                                             **{f"rayalign.produced.{k}": v for k, v in produced.items()}}))
        return run.info.run_id

    @_tolerant
    def _end_child(self) -> None:
        self.mlflow.end_run()

    @_tolerant
    def tag(self, key: str) -> str | None:
        """A tag of the pipeline's run."""
        return self.mlflow.get_run(self.run_id).data.tags.get(key)

    @_tolerant
    def set_tag(self, key: str, value: Any) -> None:
        """A tag on the pipeline's run (on the active nested run inside child_run), secrets redacted."""
        self.mlflow.set_tag(key, redact_secrets(str(value)))

    def end(self, status: str = "FINISHED") -> None:
        """End the active runs (a failing child run first, then the pipeline's); with tracking lost,
        only locally, as the store cannot be told."""
        with _fail_fast() if self.lost else nullcontext():
            while self.mlflow.active_run() is not None:
                try:
                    self.mlflow.end_run(status=status)  # off MLflow's stack even when the store is gone
                except _tracking_errors() as e:
                    if not self.lost:
                        self.lose(e)


@contextmanager
def _fail_fast() -> Iterator[None]:
    """MLflow requests without retries and with a short timeout: for a store known to be gone."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="5")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
