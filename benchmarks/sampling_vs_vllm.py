"""The sample stage (Ray Data + vLLM actors) against a bare vllm.LLM.generate of the same prompts,
k, max_tokens, dtype, engine settings and seeds, one after the other in one process tree.

    python benchmarks/sampling_vs_vllm.py --out benchmarks/results/sampling_vs_vllm.json
        [--preset default] [--set KEY=VALUE ...] [--root runs/sampling_vs_vllm]

Both sides sample sample.k responses to each training prompt of the preset, from its policy, with
per-prompt seeds derived as the stage derives them and the sampled tokens' log-probs (the stage
keeps them as reference log-probs), so they do the same work and draw the same tokens (checked:
"same_responses"). The bare side times the engine's start (vllm.LLM(...)) and one generate call
of every prompt apart. The stage cannot be timed from inside, so it runs twice, on half the
prompts and on all of them, each time in a fresh run directory through run_pipeline (its Ray
start, actor pool, engine start, write): its fixed cost and steady-state tokens/s are the
intercept and slope of those two points. "ratio" is rayalign's steady-state tokens/s over bare
vLLM's, "ratio_end_to_end" the same for the whole work (engine start included). "mfu" is each
side's steady-state 2·params·tokens/s over the matmul rate measured in the same run
(benchmarks/ceiling.py).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ceiling import ceiling, mfu  # noqa: E402
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
    summary = run_pipeline(cfg, run_dir, log=lambda line: None,
                           stages=[s for s in PIPELINE if s.name in ("prompts", "sample")])
    # Both runs start from the same state (no warm Ray workers from the first), and the bare side
    # runs without Ray's processes beside it.
    ray.shutdown()
    table = read_table(run_dir / "sample")
    return {"prompts": cfg.data.max_train_prompts, "seconds": summary["stage_seconds"]["sample"],
            "tokens": sum(table["num_tokens"].to_pylist()), "rows": table.num_rows,
            "responses": {(r["prompt_id"], r["sample_idx"]): r["response_token_ids"] for r in table.to_pylist()}}


def bare_run(cfg, prompts_dir: Path) -> dict:
    """vllm.LLM with rayalign's engine settings, then one generate call of every training prompt."""
    from vllm import LLM, SamplingParams

    s = cfg.sample
    rows = split_prompts(read_table(prompts_dir), "train").to_pylist()
    start = time.perf_counter()
    llm = LLM(**engine_kwargs(resolve_model(cfg.model.policy), s.seed, s.max_model_len, cfg.model.dtype,
                              s.kv_cache_gib, s.gpu_memory_utilization, s.enforce_eager, cfg.model.trust_remote_code))
    started = time.perf_counter()
    ids = prompt_token_ids(llm.get_tokenizer(), [r["prompt"] for r in rows])
    params = [SamplingParams(n=s.k, temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, logprobs=0,
                             seed=derived_seed(s.seed, "sample", r["prompt_id"])) for r in rows]
    outputs = llm.generate([{"prompt_token_ids": p} for p in ids], params, use_tqdm=False)
    done = time.perf_counter()
    responses = {(r["prompt_id"], i): list(c.token_ids)
                 for r, out in zip(rows, outputs) for i, c in enumerate(out.outputs)}
    return {"prompts": len(rows), "engine_start_s": started - start, "generate_s": done - started,
            "tokens": sum(len(t) for t in responses.values()), "rows": len(responses), "responses": responses}


def main() -> int:
    args = preset_arguments(__doc__, "sampling_vs_vllm")
    overrides = ["evaluate.enabled=false", *args.extra]
    cfg = load_config(args.preset, overrides)
    machine_ceiling = ceiling(cfg.model.policy, cfg.sample.resources.torch_threads)
    half = load_config(args.preset, [*overrides, f"data.max_train_prompts={max(1, cfg.data.max_train_prompts // 2)}"])
    small, full = stage_run(half, args.root / "half"), stage_run(cfg, args.root / "full")
    # Two points of seconds = fixed + tokens / rate: the stage's fixed cost and steady-state rate.
    rate = (full["tokens"] - small["tokens"]) / max(full["seconds"] - small["seconds"], 1e-9)
    fixed = full["seconds"] - full["tokens"] / rate
    bare = bare_run(cfg, args.root / "full" / "prompts")
    bare_rate = bare["tokens"] / bare["generate_s"]
    rayalign = {"stage_seconds": {"half": small["seconds"], "full": full["seconds"]},
                "tokens": {"half": small["tokens"], "full": full["tokens"]},
                "fixed_seconds": fixed, "steady_tokens_per_s": rate,
                "end_to_end_tokens_per_s": full["tokens"] / full["seconds"]}
    vllm = {"engine_start_s": bare["engine_start_s"], "generate_s": bare["generate_s"], "tokens": bare["tokens"],
            "steady_tokens_per_s": bare_rate,
            "end_to_end_tokens_per_s": bare["tokens"] / (bare["engine_start_s"] + bare["generate_s"])}
    result = {
        "preset": args.preset, "overrides": overrides,
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
