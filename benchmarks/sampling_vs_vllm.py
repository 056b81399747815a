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
tokens/s are the intercept and slope of those two points. The bare side, with no Ray running,
times the engine's start (vllm.LLM(...)), then, after a short warm-up call, one generate call of
the same half of the prompts and one of all of them (the prefix cache emptied before each): its
steady-state tokens/s are the slope of those two points too, so both sides' rates come from the
same two batches the same way; "single_call_tokens_per_s" is the call of all prompts alone. Each
point is the median of --repeats runs (the stage's alternating between the two sizes).
"ratio" is rayalign's steady-state tokens/s over bare vLLM's, "ratio_end_to_end" the same for
the whole work (engine start included). "cpu_seconds_full_run" gives the CPU seconds of each
process of the tree (the driver, Ray's, the vLLM actor's) over the run of all prompts (both
stages, Ray's start included). "mfu" is each
side's steady-state 2·params·tokens/s over the matmul rate measured in the same run
(benchmarks/ceiling.py).
"""

from __future__ import annotations

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


def bare_run(cfg, half_prompts: Path, prompts: Path, repeats: int) -> dict:
    """vllm.LLM with rayalign's engine settings, then a warm-up call and, `repeats` times, a generate
    call of the half run's training prompts and one of every training prompt."""
    from vllm import LLM

    s = cfg.sample
    half, rows = (split_prompts(read_table(p), "train").to_pylist() for p in (half_prompts, prompts))
    start = time.perf_counter()
    llm = LLM(**engine_kwargs(resolve_model(cfg.model.policy), s.seed, s.max_model_len, cfg.model.dtype,
                              s.kv_cache_gib, s.gpu_memory_utilization, s.enforce_eager, cfg.model.trust_remote_code))
    engine_start = time.perf_counter() - start
    generate(llm, cfg, rows[:1], max_tokens=4)  # one-time kernel set-up, which each stage run pays too
    seconds, tokens = {"half": [], "full": []}, {}
    for _ in range(repeats):
        for size, work in (("half", half), ("full", rows)):
            took, responses = generate(llm, cfg, work)
            seconds[size].append(took)
            tokens[size] = sum(len(t) for t in responses.values())
    return {"prompts": len(rows), "engine_start_s": engine_start, "seconds": seconds, "tokens": tokens,
            "responses": responses}


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
    runs = {"half": [], "full": []}
    for _ in range(args.repeats):  # alternating, so that a slow spell of the machine hits both sizes
        runs["half"].append(stage_run(half, args.root / "half"))
        runs["full"].append(stage_run(cfg, args.root / "full"))
    stage_seconds = {size: [r["seconds"] for r in done] for size, done in runs.items()}
    stage_tokens = {size: done[-1]["tokens"] for size, done in runs.items()}
    rate, fixed = steady(stage_seconds, stage_tokens)
    full = runs["full"][-1]
    bare = bare_run(cfg, args.root / "half" / "prompts", args.root / "full" / "prompts", args.repeats)
    bare_rate, _ = steady(bare["seconds"], bare["tokens"])
    bare_full = median(bare["seconds"]["full"])
    rayalign = {"stage_seconds": stage_seconds, "tokens": stage_tokens,
                "cpu_seconds_full_run": full["cpu_seconds"],
                "fixed_seconds": fixed, "steady_tokens_per_s": rate,
                "end_to_end_tokens_per_s": full["tokens"] / median(stage_seconds["full"])}
    vllm = {"engine_start_s": bare["engine_start_s"], "generate_s": bare["seconds"], "tokens": bare["tokens"],
            "steady_tokens_per_s": bare_rate, "single_call_tokens_per_s": bare["tokens"]["full"] / bare_full,
            "end_to_end_tokens_per_s": bare["tokens"]["full"] / (bare["engine_start_s"] + bare_full)}
    result = {
        "preset": args.preset, "overrides": overrides, "repeats": args.repeats,
        "work": {"prompts": bare["prompts"], "k": cfg.sample.k, "max_tokens": cfg.sample.max_tokens,
                 "dtype": cfg.model.dtype, "model": cfg.model.policy},
        "rayalign": rayalign, "vllm": vllm,
        "same_responses": full["responses"] == bare["responses"],
        "ceiling": machine_ceiling,
        "mfu": {"rayalign": mfu(rate, machine_ceiling, 2), "vllm": mfu(bare_rate, machine_ceiling, 2)},
        "ratio": rate / bare_rate,
        "ratio_end_to_end": rayalign["end_to_end_tokens_per_s"] / vllm["end_to_end_tokens_per_s"],
    }
    write_result(args.out, result, ("ratio", "ratio_end_to_end", "same_responses"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
