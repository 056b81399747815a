"""rayalign's command line: `rayalign run | submit | jobs | presets | config | show | runs | track`."""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from rayalign.config import ConfigError, load_config, preset_names
from rayalign.redaction import redact_secrets


def _run(args: argparse.Namespace) -> int:
    from rayalign.api import run
    from rayalign.console import LOG_FILE, quiet_console
    from rayalign.pipeline.store import writable_run_dir
    from rayalign.pipeline.summary import format_summary

    overrides = list(args.overrides)
    if args.address:
        overrides.append(f"ray.address={args.address}")
    cfg = load_config(args.config, overrides)
    run_dir = writable_run_dir(Path(args.run_dir) if args.run_dir else Path("runs") / cfg.name)
    log_file = run_dir / LOG_FILE
    with quiet_console(log_file, verbose=args.verbose) as console:
        libraries = f"\nrayalign: library output (Ray, vLLM, DeepSpeed, MLflow) in {log_file}"
        console.say(f"rayalign: run directory {run_dir}" + ("" if args.verbose else libraries))
        summary = run(cfg, run_dir=run_dir, tracking_uri=args.tracking_uri, log=console.say,
                      progress=console.status if console.live else None)
        console.say(format_summary(summary))
    return 0


def _track(args: argparse.Namespace) -> int:
    from rayalign.pipeline.runner import run_pipeline

    run_dir = Path(args.run_dir)
    config = run_dir / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"{config} does not exist: {run_dir} is not a rayalign run directory")
    summary = run_pipeline(load_config(str(config)), run_dir, tracking_uri=args.tracking_uri, track_only=True)
    print(f"rayalign: {run_dir} is in MLflow run {summary['mlflow_run_id']} at {summary['tracking_uri']}")
    return 0


def _config(args: argparse.Namespace) -> int:
    from rayalign.config.documented import documented_yaml

    print(documented_yaml(load_config(args.config, list(args.overrides))))
    return 0


def _show(args: argparse.Namespace) -> int:
    from rayalign.run_dirs import show

    print(show(Path(args.run_dir)))
    return 0


def _runs(args: argparse.Namespace) -> int:
    from rayalign.run_dirs import list_runs

    print(list_runs(Path(args.root)))
    return 0


def _submit(args: argparse.Namespace) -> int:
    from rayalign import jobs

    job_id = jobs.submit(args.config, list(args.overrides), args.address, args.run_dir, args.env)
    address = redact_secrets(args.address)
    print(f"rayalign: submitted job {job_id} to {address}", flush=True)
    if not args.wait:
        print(f"follow it with: rayalign jobs logs {job_id} --follow --address {address}")
        return 0
    state = jobs.logs(args.address, job_id, follow=True)
    print(f"rayalign: job {job_id} {state}", flush=True)
    return jobs.exit_code(state)


def _jobs(args: argparse.Namespace) -> int:
    from rayalign import jobs

    if args.action == "status":
        state = jobs.status(args.address, args.job_id)
        print(state)
    elif args.action == "logs":
        state = jobs.logs(args.address, args.job_id, follow=args.follow)
    else:
        print("stopped" if jobs.stop(args.address, args.job_id) else "not running")
        state = jobs.status(args.address, args.job_id)
    return jobs.exit_code(state)


def _presets(_: argparse.Namespace) -> int:
    from importlib import resources

    for name in preset_names():
        text = resources.files("rayalign.configs").joinpath(f"{name}.yaml").read_text()
        # A preset's first line, a comment, describes it.
        description = text.splitlines()[0].lstrip("# ") if text.startswith("#") else ""
        print(f"{name:<16} {description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rayalign", description="Rejection-sampling preference alignment on Ray.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the pipeline (resumes complete stages)")
    run.add_argument("config", nargs="?", default=None,
                     help="preset name or YAML file (default: the 'default' preset); see `rayalign presets`")
    run.add_argument("overrides", nargs="*", help="dotted overrides, e.g. sample.k=4 train.learning_rate=2e-6")
    run.add_argument("--run-dir", help="run directory (default: runs/<name>)")
    run.add_argument("--address", help="Ray cluster address (default: start or join a local Ray)")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite under the run root)")
    run.add_argument("--verbose", action="store_true",
                     help="show library output (Ray, vLLM, DeepSpeed, MLflow, warnings) on the console; by "
                     "default it goes to run.log in the run directory")
    run.set_defaults(func=_run)
    submit = sub.add_parser("submit", help="submit the pipeline to a Ray cluster as a Ray Job")
    submit.add_argument("config", nargs="?", default=None, help="preset name or YAML file (default: 'default')")
    submit.add_argument("overrides", nargs="*", help="dotted overrides, as for `run`")
    submit.add_argument("--address", required=True, help="Ray Jobs API (dashboard) address, e.g. http://HEAD:8265")
    submit.add_argument("--run-dir", help="run directory on the cluster (default: runs/<name> in the job's dir)")
    submit.add_argument("--wait", action="store_true", help="follow the logs; exit non-zero if the job fails")
    submit.add_argument("--env", action="append", default=[], metavar="NAME",
                        help="pass this local environment variable to the job (repeatable), e.g. "
                        "--env MLFLOW_TRACKING_PASSWORD; no other local variable reaches it")
    submit.set_defaults(func=_submit)
    job_cmd = sub.add_parser("jobs", help="status, logs or stop of a submitted job")
    job_cmd.add_argument("action", choices=["status", "logs", "stop"])
    job_cmd.add_argument("job_id")
    job_cmd.add_argument("--address", required=True, help="Ray Jobs API (dashboard) address")
    job_cmd.add_argument("--follow", action="store_true", help="logs: follow until the job ends")
    job_cmd.set_defaults(func=_jobs)
    presets = sub.add_parser("presets", help="list the packaged presets")
    presets.set_defaults(func=_presets)
    config = sub.add_parser("config", help="print the resolved config, each option with its documentation")
    config.add_argument("config", nargs="?", default=None, help="preset name or YAML file (default: 'default')")
    config.add_argument("overrides", nargs="*", help="dotted overrides, as for `run`")
    config.set_defaults(func=_config)
    show = sub.add_parser("show", help="a run directory's summary and where its outputs are")
    show.add_argument("run_dir")
    show.set_defaults(func=_show)
    track = sub.add_parser("track", help="log a finished run directory to MLflow (after the store was unreachable)")
    track.add_argument("run_dir")
    track.add_argument("--tracking-uri", help="MLflow tracking URI (default: the run's tracking.uri, "
                       "$MLFLOW_TRACKING_URI, else sqlite under the run root)")
    track.set_defaults(func=_track)
    runs = sub.add_parser("runs", help="the runs under a directory, with status and headline metrics")
    runs.add_argument("root", nargs="?", default="runs", help="directory holding run directories (default: runs)")
    runs.set_defaults(func=_runs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # A first positional that looks like an override is an override, not a config.
    if getattr(args, "config", None) and "=" in args.config:
        args.overrides.insert(0, args.config)
        args.config = None
    try:
        return args.func(args)
    except Exception as exc:
        known = _explained(exc)
        if known is None:
            # A bug: its whole traceback, with what it quotes (a URI with credentials, a token) redacted.
            print(redact_secrets(traceback.format_exc()), file=sys.stderr, end="")
            return 1
        code, message = known
        _error(message)
        return code


def _explained(exc: Exception) -> tuple[int, str] | None:
    """(exit code, message) of an error the user can act on: 2 when the input is wrong (config,
    data, models, addresses), 1 when the run failed or was refused; None for a bug, whose
    traceback the user should see."""
    from rayalign.data.prompts import PromptDataError
    from rayalign.jobs import JobError
    from rayalign.pretrained import ModelNotFoundError
    from rayalign.pipeline.context import StageError
    from rayalign.pipeline.runner import RayConnectError
    from rayalign.pipeline.store import RunDirBusyError, RunDirError
    from rayalign.tracking import TrackingError

    if isinstance(exc, (ConfigError, PromptDataError, ModelNotFoundError, FileNotFoundError, RunDirError,
                        RayConnectError, TrackingError)):
        return 2, str(exc)
    if isinstance(exc, StageError):
        return 1, f"{exc}\n(completed stages are kept; rerun the same command to resume)"
    return (1, str(exc)) if isinstance(exc, (JobError, RunDirBusyError)) else None


def _error(message: str) -> None:
    # Errors quote addresses and URIs as given, credentials included.
    print(f"rayalign: error: {redact_secrets(message)}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
