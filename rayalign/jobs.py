"""Submit the pipeline to a Ray cluster as a Ray Job, and follow, query or stop it.

The config is validated here before anything is sent, so a typo fails at once; what travels
is the resolved config (as YAML in the job's working directory) and the rayalign package
(as a py_module). The cluster must have rayalign's dependencies installed.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
import tempfile
import time
from pathlib import Path

import yaml

import rayalign
from rayalign.config import load_config

JOB_CONFIG = "rayalign_job.yaml"
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
AGENT_WAIT_S = 60


class JobError(RuntimeError):
    """A Jobs API problem: unreachable dashboard, unknown job id, ..."""


def _client(address: str):
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise JobError(f"cannot reach the Ray Jobs API at {address}: {exc}. Give the dashboard address "
                       "(http://HEAD:8265); on token-authenticated clusters set RAY_AUTH_MODE=token") from None


def submit(config: str | None, overrides: list[str], address: str, run_dir: str | None = None) -> str:
    """Validate the config, then submit `rayalign run` as a Ray Job; return the job id."""
    cfg = load_config(config, overrides)
    entrypoint = f"python -m rayalign.cli run {JOB_CONFIG}" + (f" --run-dir {shlex.quote(run_dir)}" if run_dir else "")
    client = _client(address)
    # Ray uploads the working directory during submit_job, so the staging copy can go afterwards.
    with tempfile.TemporaryDirectory(prefix="rayalign-job-") as staging:
        (Path(staging) / JOB_CONFIG).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        runtime_env = {"working_dir": staging, "py_modules": [str(Path(rayalign.__file__).parent)],
                       "env_vars": {"MLFLOW_DISABLE_TELEMETRY": "true"}}
        deadline = time.monotonic() + AGENT_WAIT_S
        while True:
            try:
                return client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env,
                                         metadata={"rayalign.name": cfg.name})
            except RuntimeError as exc:
                # A freshly started head answers before its job agent is up; that passes within seconds.
                if "No available agent" not in str(exc) or time.monotonic() > deadline:
                    raise JobError(f"the Ray Jobs API at {address} refused the job: {exc}") from None
                time.sleep(2)


def status(address: str, job_id: str) -> str:
    """The job's status name: PENDING, RUNNING, SUCCEEDED, FAILED or STOPPED."""
    try:
        return _client(address).get_job_status(job_id).value
    except RuntimeError as exc:
        raise JobError(f"no job {job_id!r} at {address}: {exc}") from None


def logs(address: str, job_id: str, follow: bool = False, out=None) -> str:
    """Write the job's logs to `out` (default stdout), following them until the job ends; return its status."""
    out = out or sys.stdout
    client = _client(address)
    if not follow:
        out.write(client.get_job_logs(job_id))
        return status(address, job_id)

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    asyncio.run(tail())
    return wait(address, job_id)


def wait(address: str, job_id: str, poll_s: float = 1.0) -> str:
    """Block until the job reaches a terminal status; return it."""
    while (state := status(address, job_id)) not in TERMINAL:
        time.sleep(poll_s)
    return state


def stop(address: str, job_id: str) -> bool:
    """Ask the cluster to stop the job; True if it was running."""
    return _client(address).stop_job(job_id)


def exit_code(state: str) -> int:
    """0 for a succeeded (or still running) job, 1 for a failed or stopped one."""
    return 1 if state in ("FAILED", "STOPPED") else 0
