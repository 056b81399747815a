"""rayalign's command line: `rayalign run | presets`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rayalign.config import ConfigError, load_config, preset_names


def _run(args: argparse.Namespace) -> int:
    from rayalign.pipeline import run_pipeline
    from rayalign.summary import format_summary

    overrides = list(args.overrides)
    if args.address:
        overrides.append(f"ray.address={args.address}")
    cfg = load_config(args.config, overrides)
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / cfg.name
    print(f"rayalign: run directory {run_dir.resolve()}", flush=True)
    summary = run_pipeline(cfg, run_dir, tracking_uri=args.tracking_uri)
    print(format_summary(summary), flush=True)
    return 0


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
    run.set_defaults(func=_run)
    presets = sub.add_parser("presets", help="list the packaged presets")
    presets.set_defaults(func=_presets)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # A first positional that looks like an override is an override, not a config.
    if getattr(args, "config", None) and "=" in args.config:
        args.overrides.insert(0, args.config)
        args.config = None
    from rayalign.data.prompts import PromptDataError
    from rayalign.models import ModelNotFoundError

    known = (ConfigError, PromptDataError, ModelNotFoundError)
    try:
        return args.func(args)
    except known as exc:
        print(f"rayalign: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from rayalign.pipeline import RayConnectError
        from rayalign.stages import StageError

        if isinstance(exc, (RayConnectError, StageError)):
            print(f"rayalign: error: {exc}\n(completed stages are kept; rerun the same command to resume)",
                  file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
