"""Submit the pipeline to a Ray cluster as a Ray Job, and follow, query or stop it.

The config is validated here before anything is sent, so a typo fails at once; what travels
is the resolved config (as YAML in the job's working directory), the rayalign package (as a
py_module) and only the local environment variables the user names (`--env`). The cluster must
have rayalign's dependencies installed. Every request carries this machine's Ray token, for
clusters with Ray's token authentication.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

import rayalign
from rayalign.config import load_config

JOB_CONFIG = "rayalign_job.yaml"
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
AGENT_WAIT_S = 60


class JobError(RuntimeError):
    """A Jobs API problem: unreachable dashboard, unknown job id, ..."""


def auth_headers() -> dict[str, str]:
    """The Authorization header with this machine's Ray token, found as `ray get-auth-token` finds it
    ($RAY_AUTH_TOKEN, the file $RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token); none without a token
    or with RAY_AUTH_MODE=disabled. Ray's own client sends it only under RAY_AUTH_MODE=token."""
    from ray._raylet import AuthenticationTokenLoader

    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return {}
    loader = AuthenticationTokenLoader.instance()
    if not loader.has_token(ignore_auth_mode=True):
        return {}
    return {"Authorization": f"Bearer {loader.get_raw_token(ignore_auth_mode=True)}"}


def _client(address: str):
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address, headers=auth_headers())
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise JobError(f"cannot reach the Ray Jobs API at {address}: {exc}. Give the dashboard address "
                       "(http://HEAD:8265); a token-authenticated cluster needs its token here, in "
                       "RAY_AUTH_TOKEN or ~/.ray/auth_token (`ray get-auth-token` on the head prints it)") from None


def job_runtime_env(working_dir: str, env_names: Sequence[str] = ()) -> dict:
    """The runtime_env of a rayalign job: the staged working directory, the rayalign package, and of
    the local environment only the variables named in `env_names` (e.g. MLFLOW_TRACKING_PASSWORD for
    a server that needs it); a named variable that is not set is an error."""
    missing = [name for name in env_names if name not in os.environ]
    if missing:
        raise JobError(f"--env {' '.join(missing)}: not set in this environment; export it or drop --env")
    return {"working_dir": working_dir, "py_modules": [str(Path(rayalign.__file__).parent)],
            "env_vars": {"MLFLOW_DISABLE_TELEMETRY": "true", **{name: os.environ[name] for name in env_names}}}


def submit(config: str | None, overrides: list[str], address: str, run_dir: str | None = None,
           env_names: Sequence[str] = ()) -> str:
    """Validate the config, then submit `rayalign run` as a Ray Job; return the job id. The job gets
    the local environment variables named in `env_names`, and no other."""
    cfg = load_config(config, overrides)
    entrypoint = f"python -m rayalign.cli run {JOB_CONFIG}" + (f" --run-dir {shlex.quote(run_dir)}" if run_dir else "")
    # Ray uploads the working directory during submit_job, so the staging copy can go afterwards.
    with tempfile.TemporaryDirectory(prefix="rayalign-job-") as staging:
        # The real config, not config.yaml's redacted copy: the job must reach the same tracking server.
        (Path(staging) / JOB_CONFIG).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        runtime_env = job_runtime_env(staging, env_names)
        client = _client(address)
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
