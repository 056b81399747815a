"""The sample stage (Ray Data + vLLM actors) against a bare vllm.LLM.generate of the same prompts,
k, max_tokens, dtype, engine settings and seeds, one after the other in one process tree.

    python benchmarks/sampling_vs_vllm.py --out benchmarks/results/sampling_vs_vllm.json
        [--preset default] [--set KEY=VALUE ...] [--root runs/sampling_vs_vllm] [--repeats 2]

Both sides sample sample.k responses to each training prompt of the preset, from its policy, with
per-prompt seeds derived as the stage derives them and the sampled tokens' log-probs (the stage
keeps them as reference log-probs), so they do the same work and draw the same tokens (checked:
"same_responses"). The stage cannot be timed from inside, so it runs on half the prompts
and on all of them, each time in a fresh run directory and a fresh local Ray through
run_pipeline (its Ray start, actor pool, engine start, write): its fixed cost and steady-state
tokens/s are the intercept and slope of those two points. The bare engine (vllm.LLM(...), its
start timed) lives in this process; after each stage run, with the stage's Ray shut down, it
generates the same prompts in one call (the prefix cache emptied before each), so the sides
alternate and a slow spell of the machine hits both. Its steady-state tokens/s are the slope of
its two points too, so both sides' rates come from the same two batches the same way;
"single_call_tokens_per_s" is the call of all prompts alone. Each point is the median of
--repeats runs.
"ratio" is rayalign's steady-state tokens/s over bare vLLM's, "ratio_end_to_end" the same for
the whole work (engine start included). "cpu_seconds_full_run" gives the CPU seconds of each
process of the tree (the driver, Ray's, the vLLM actor's) over the run of all prompts (both
stages, Ray's start included). "mfu" is each
side's steady-state 2·params·tokens/s over the matmul rate measured in the same run
(benchmarks/ceiling.py).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ceiling import ceiling, mfu  # noqa: E402
from peak_memory import CpuSeconds  # noqa: E402
from record_run import preset_arguments, write_result  # noqa: E402

from rayalign.actors.sampler import engine_kwargs  # noqa: E402
from rayalign.config import load_config  # noqa: E402
from rayalign.data.parquet import read_table  # noqa: E402
from rayalign.data.prompts import prompt_token_ids, split_prompts  # noqa: E402
from rayalign.models import resolve_model  # noqa: E402
from rayalign.pipeline.runner import run_pipeline  # noqa: E402
from rayalign.pipeline.stages import PIPELINE  # noqa: E402
from rayalign.seeding import derived_seed  # noqa: E402


def stage_run(cfg, run_dir: Path) -> dict:
    """The prompts and sample stages in a fresh `run_dir` and a fresh local Ray: the sample stage's
    seconds, tokens and rows."""
    import ray

    shutil.rmtree(run_dir, ignore_errors=True)
    with CpuSeconds() as cpu:
        summary = run_pipeline(cfg, run_dir, log=lambda line: None,
                               stages=[s for s in PIPELINE if s.name in ("prompts", "sample")])
    # Both runs start from the same state (no warm Ray workers from the first), and the bare side
    # runs without Ray's processes beside it.
    ray.shutdown()
    table = read_table(run_dir / "sample")
    return {"prompts": cfg.data.max_train_prompts, "seconds": summary["stage_seconds"]["sample"],
            "tokens": sum(table["num_tokens"].to_pylist()), "rows": table.num_rows,
            "cpu_seconds": {name: round(v, 1) for name, v in cpu.by_process.items() if v >= 0.5},
            "responses": {(r["prompt_id"], r["sample_idx"]): r["response_token_ids"] for r in table.to_pylist()}}


def generate(llm, cfg, rows: list[dict], max_tokens: int | None = None) -> tuple[float, dict]:
    """One generate call of `rows` as the stage samples them: (seconds, {(prompt_id, i): tokens})."""
    from vllm import SamplingParams

    s = cfg.sample
    llm.reset_prefix_cache()  # no prompt computed by an earlier call
    start = time.perf_counter()
    ids = prompt_token_ids(llm.get_tokenizer(), [r["prompt"] for r in rows])
    params = [SamplingParams(n=s.k, temperature=s.temperature, top_p=s.top_p, max_tokens=max_tokens or s.max_tokens,
                             logprobs=0, seed=derived_seed(s.seed, "sample", r["prompt_id"])) for r in rows]
    outputs = llm.generate([{"prompt_token_ids": p} for p in ids], params, use_tqdm=False)
    seconds = time.perf_counter() - start
    return seconds, {(r["prompt_id"], i): list(c.token_ids) for r, out in zip(rows, outputs)
                     for i, c in enumerate(out.outputs)}


def bare_engine(cfg):
    """vllm.LLM with rayalign's engine settings, and a short warm-up call (the one-time kernel set-up
    each stage run pays too): (engine, seconds its start took). The driver's environment is restored
    after, so that the Ray each later stage run starts sees a run's environment, not vLLM's."""
    from vllm import LLM

    s = cfg.sample
    environ = dict(os.environ)
    start = time.perf_counter()
    llm = LLM(**engine_kwargs(resolve_model(cfg.model.policy), s.seed, s.max_model_len, cfg.model.dtype,
                              s.kv_cache_gib, s.gpu_memory_utilization, s.enforce_eager, cfg.model.trust_remote_code))
    engine_start = time.perf_counter() - start
    generate(llm, cfg, [{"prompt_id": "warm-up", "prompt": "Hello"}], max_tokens=4)
    os.environ.clear()
    os.environ.update(environ)
    return llm, engine_start


def steady(seconds: dict, tokens: dict) -> tuple[float, float]:
    """(tokens/s, fixed seconds) through two points of seconds = fixed + tokens / rate, each point
    the median of its runs."""
    half, full = median(seconds["half"]), median(seconds["full"])
    rate = (tokens["full"] - tokens["half"]) / max(full - half, 1e-9)
    return rate, full - tokens["full"] / rate


def main() -> int:
    args = preset_arguments(__doc__, "sampling_vs_vllm", repeats=2)
    overrides = ["evaluate.enabled=false", *args.extra]
    cfg = load_config(args.preset, overrides)
    machine_ceiling = ceiling(cfg.model.policy, cfg.sample.resources.torch_threads)
    half = load_config(args.preset, [*overrides, f"data.max_train_prompts={max(1, cfg.data.max_train_prompts // 2)}"])
    llm, engine_start = bare_engine(cfg)
    runs, bare_seconds, bare_tokens = {"half": [], "full": []}, {"half": [], "full": []}, {}
    # The sides alternate, each stage run followed by the bare engine's call of the same prompts, so
    # that a slow spell of the machine hits both sides and both sizes.
    for _ in range(args.repeats):
        for size, size_cfg in (("half", half), ("full", cfg)):
            runs[size].append(stage_run(size_cfg, args.root / size))
            rows = split_prompts(read_table(args.root / size / "prompts"), "train").to_pylist()
            took, bare_responses = generate(llm, cfg, rows)
            bare_seconds[size].append(took)
            bare_tokens[size] = sum(len(t) for t in bare_responses.values())
    stage_seconds = {size: [r["seconds"] for r in done] for size, done in runs.items()}
    stage_tokens = {size: done[-1]["tokens"] for size, done in runs.items()}
    rate, fixed = steady(stage_seconds, stage_tokens)
    full = runs["full"][-1]
    bare_rate, _ = steady(bare_seconds, bare_tokens)
    bare_full = median(bare_seconds["full"])
    rayalign = {"stage_seconds": stage_seconds, "tokens": stage_tokens,
                "cpu_seconds_full_run": full["cpu_seconds"],
                "fixed_seconds": fixed, "steady_tokens_per_s": rate,
                "end_to_end_tokens_per_s": full["tokens"] / median(stage_seconds["full"])}
    vllm = {"engine_start_s": engine_start, "generate_s": bare_seconds, "tokens": bare_tokens,
            "steady_tokens_per_s": bare_rate, "single_call_tokens_per_s": bare_tokens["full"] / bare_full,
            "end_to_end_tokens_per_s": bare_tokens["full"] / (engine_start + bare_full)}
    result = {
        "preset": args.preset, "overrides": overrides, "repeats": args.repeats,
        "work": {"prompts": len(rows), "k": cfg.sample.k, "max_tokens": cfg.sample.max_tokens,
                 "dtype": cfg.model.dtype, "model": cfg.model.policy},
        "rayalign": rayalign, "vllm": vllm,
        "same_responses": full["responses"] == bare_responses,
        "ceiling": machine_ceiling,
        "mfu": {"rayalign": mfu(rate, machine_ceiling, 2), "vllm": mfu(bare_rate, machine_ceiling, 2)},
        "ratio": rate / bare_rate,
        "ratio_end_to_end": rayalign["end_to_end_tokens_per_s"] / vllm["end_to_end_tokens_per_s"],
    }
    write_result(args.out, result, ("ratio", "ratio_end_to_end", "same_responses"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
