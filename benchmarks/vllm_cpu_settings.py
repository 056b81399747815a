"""vLLM-CPU engine settings, swept on the sampling work of a preset: which thread count, thread
binding, dtype and compilation mode sample fastest on this machine.

    python benchmarks/vllm_cpu_settings.py --out benchmarks/results/vllm_cpu_settings.json
        [--preset default] [--set KEY=VALUE ...] [--root runs/vllm_cpu_settings]

Each setting runs benchmarks/sampling_vs_vllm.py's bare engine (rayalign's engine settings, one
generate call of every training prompt, sample.k responses each) in a fresh process, since vLLM
and OpenMP read their environment once: engine start and generate seconds apart, steady tokens/s,
and whether it drew the baseline's tokens. "ratio" is a setting's steady tokens/s over the
baseline's (rayalign's own settings: OMP threads = sample.resources.torch_threads, no binding,
the preset's dtype, enforce_eager). A setting that fails records its error and the sweep goes on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record_run import preset_arguments, write_result  # noqa: E402

from rayalign.config import load_config  # noqa: E402
from rayalign.pipeline.runner import run_pipeline  # noqa: E402
from rayalign.pipeline.stages import prompts  # noqa: E402

# name: (environment, config overrides); the baseline first.
SETTINGS = {
    "baseline": ({}, []),
    "omp_threads=1": ({"OMP_NUM_THREADS": "1"}, []),
    "bind=auto": ({"VLLM_CPU_OMP_THREADS_BIND": "auto"}, []),  # vLLM's default: threads pinned to cores
    "dtype=bfloat16": ({}, ["model.dtype=bfloat16"]),
    "enforce_eager=false": ({}, ["sample.enforce_eager=false"]),
}
CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from sampling_vs_vllm import bare_run
from rayalign.config import load_config
run = bare_run(load_config(sys.argv[2], json.loads(sys.argv[3])), Path(sys.argv[4]))
run["responses"] = {f"{k[0]}/{k[1]}": v for k, v in run["responses"].items()}
print("RESULT " + json.dumps(run))
"""


def measure(preset: str, overrides: list[str], env: dict, prompts_dir: Path, threads: int | None) -> dict:
    """One setting's bare-engine run in a fresh process: its figures, or its error."""
    child_env = {**os.environ, "OMP_NUM_THREADS": str(threads or os.cpu_count()), **env}
    try:
        done = subprocess.run([sys.executable, "-c", CHILD, str(Path(__file__).resolve().parent), preset,
                               json.dumps(overrides), str(prompts_dir)], env=child_env, capture_output=True,
                              text=True, timeout=1800)
    except subprocess.TimeoutExpired:
        return {"error": ["no result in 1800 s"]}
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:]}
    run = json.loads(lines[-1].removeprefix("RESULT "))
    run["steady_tokens_per_s"] = run["tokens"] / run["generate_s"]
    return run


def main() -> int:
    args = preset_arguments(__doc__, "vllm_cpu_settings")
    cfg = load_config(args.preset, args.extra)
    run_pipeline(cfg, args.root, log=lambda line: None, stages=[prompts.STAGE])
    results = {}
    for name, (env, overrides) in SETTINGS.items():
        results[name] = measure(args.preset, [*args.extra, *overrides], env, args.root / "prompts",
                                cfg.sample.resources.torch_threads)
        print(name, {k: v for k, v in results[name].items() if k != "responses"}, flush=True)
    baseline = results["baseline"]
    reference = baseline.get("responses")
    for run in results.values():
        responses = run.pop("responses", None)
        if responses is not None and reference is not None:
            run["ratio"] = run["steady_tokens_per_s"] / baseline["steady_tokens_per_s"]
            run["same_responses"] = responses == reference
    result = {"preset": args.preset, "overrides": args.extra,
              "work": {"prompts": baseline.get("prompts"), "k": cfg.sample.k, "max_tokens": cfg.sample.max_tokens,
                       "dtype": cfg.model.dtype, "model": cfg.model.policy},
              "settings": {name: {"environment": env, "overrides": overrides, **results[name]}
                           for name, (env, overrides) in SETTINGS.items()}}
    write_result(args.out, result, ("settings",))
    return 0


if __name__ == "__main__":
    sys.exit(main())
