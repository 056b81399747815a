"""Sample the SFT and the aligned policy on held-out prompts, score both with the gold reward."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from rayalign.config import RunConfig
from rayalign.data import schemas
from rayalign.data.prompts import split_prompts
from rayalign.data.ray_io import map_with_actors, to_table
from rayalign.evaluation.metrics import mean, win_rate
from rayalign.reference import ReferenceLogprobs
from rayalign.rewards import GOLD_REWARDS
from rayalign.sampling.vllm_sampler import VLLMSampler, sampler_kwargs


def _policy_samples(prompts: pa.Table, model_path: str, cfg: RunConfig, ref_path: str | None) -> pa.Table:
    ds = ray.data.from_arrow(prompts)
    ds = map_with_actors(ds, VLLMSampler, sampler_kwargs(model_path, cfg.sample, cfg.model.dtype,
                                                         n=cfg.evaluate.samples_per_prompt, seed=cfg.evaluate.seed),
                         cfg.sample.resources)
    if ref_path is not None:
        ds = map_with_actors(ds, ReferenceLogprobs, {"model_path": ref_path, "dtype": cfg.model.dtype},
                             cfg.reference.resources)
    ds = map_with_actors(ds, GOLD_REWARDS[cfg.evaluate.gold_reward], {}, cfg.score.resources)
    return to_table(ds).sort_by([("prompt_id", "ascending"), ("sample_idx", "ascending")])


def evaluate(prompts: pa.Table, sft_path: str, aligned_path: str, ref_path: str, cfg: RunConfig,
             out: Path) -> tuple[pa.Table, dict[str, float]]:
    """The evaluate table (schemas.EVALUATE) written under `out`, and its summary metrics."""
    heldout = split_prompts(prompts, "heldout")
    sft = _policy_samples(heldout, sft_path, cfg, ref_path=None)
    aligned = _policy_samples(heldout, aligned_path, cfg, ref_path=ref_path)
    if sft.num_rows != aligned.num_rows:
        raise RuntimeError(f"evaluation sampled {sft.num_rows} SFT but {aligned.num_rows} aligned responses")
    kl = pc.subtract(aligned["sampler_logprob"], aligned["ref_logprob"])
    table = pa.table({
        "prompt_id": aligned["prompt_id"], "prompt": aligned["prompt"], "sample_idx": aligned["sample_idx"],
        "sft_response": sft["response"], "aligned_response": aligned["response"],
        "sft_reward": sft["reward"], "aligned_reward": aligned["reward"], "kl": kl,
    }, schema=schemas.EVALUATE)
    pq.write_table(table, out / "evaluate.parquet")
    sft_r, aligned_r = table["sft_reward"].to_pylist(), table["aligned_reward"].to_pylist()
    metrics = {
        "sft_reward": mean(sft_r),
        "aligned_reward": mean(aligned_r),
        "win_rate": win_rate(table["prompt_id"].to_pylist(), aligned_r, sft_r),
        "kl": mean(table["kl"].to_pylist()),
        "heldout_prompts": float(heldout.num_rows),
        "aligned_response_tokens": mean(aligned["num_tokens"].to_pylist()),
        "sft_response_tokens": mean(sft["num_tokens"].to_pylist()),
    }
    return table, metrics
