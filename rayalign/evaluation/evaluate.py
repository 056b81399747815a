"""Sample a policy on held-out prompts and score its responses with the gold reward: the SFT policy
once (heldout_samples), the aligned policy after every round (evaluate), which compares the two and
estimates KL(aligned ‖ reference) on the aligned policy's samples."""

from __future__ import annotations

import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from rayalign.actors.logprobs import SequenceLogprobs
from rayalign.actors.rewards import gold_scorer
from rayalign.actors.runtime import map_with_actors
from rayalign.actors.sampler import VLLMSampler, sampler_kwargs
from rayalign.config import RunConfig
from rayalign.data import schemas
from rayalign.data.prompts import split_prompts
from rayalign.data.ray_io import to_table
from rayalign.evaluation.metrics import mean, win_rate
from rayalign.progress import NO_PROGRESS, Progress


def _policy_samples(prompts: pa.Table, model_path: str, cfg: RunConfig, logprobs: dict[str, str],
                    progress: Progress) -> pa.Table:
    ev = cfg.evaluate
    # Every policy draws from one random stream: the comparison is paired, prompt by prompt.
    trust = cfg.model.trust_remote_code
    kwargs = sampler_kwargs(model_path, cfg.sample, cfg.model.dtype, n=ev.samples_per_prompt, seed=ev.seed,
                            stream="evaluate", temperature=ev.temperature, top_p=ev.top_p, trust_remote_code=trust)
    ds = map_with_actors(ray.data.from_arrow(prompts), VLLMSampler, kwargs, cfg.sample.resources)
    if logprobs:
        ds = map_with_actors(ds, SequenceLogprobs, {"models": logprobs, "dtype": cfg.model.dtype,
                                                    "trust_remote_code": trust}, cfg.reference.resources)
    ds = progress.count(map_with_actors(ds, *gold_scorer(ev, trust), cfg.score.resources))
    return to_table(ds).sort_by([("prompt_id", "ascending"), ("sample_idx", "ascending")])


def kl_samples(prompts: pa.Table, policy_path: str, ref_path: str, cfg: RunConfig,
               progress: Progress = NO_PROGRESS) -> pa.Table:
    """The policy's samples on `prompts` with log π_θ (policy_logprob) and log π_ref (ref_logprob) of
    each, both from the same forward pass code: their difference is a per-sequence KL sample."""
    return _policy_samples(prompts, policy_path, cfg, {"policy_logprob": policy_path, "ref_logprob": ref_path},
                           progress)


def heldout_samples(prompts: pa.Table, policy_path: str, cfg: RunConfig,
                    progress: Progress = NO_PROGRESS) -> pa.Table:
    """The policy's evaluate.samples_per_prompt responses to each held-out prompt of `prompts` (a
    prompts table), scored by the gold reward (schemas.HELDOUT), sorted by (prompt_id, sample_idx)."""
    heldout = split_prompts(prompts, "heldout")
    progress.phase(heldout.num_rows * cfg.evaluate.samples_per_prompt, "responses")
    return _policy_samples(heldout, policy_path, cfg, {}, progress).select(schemas.HELDOUT.names)


def evaluate(prompts: pa.Table, sft: pa.Table, aligned_path: str, ref_path: str, cfg: RunConfig,
             out: Path, progress: Progress = NO_PROGRESS) -> tuple[pa.Table, dict[str, float]]:
    """The evaluate table (schemas.EVALUATE) written under `out`, and its summary metrics: the
    aligned policy's held-out samples against the SFT policy's (`sft`, heldout_samples of the same
    prompts and settings); its scored responses count on `progress`.

    The KL estimate E_{y∼π_θ}[log π_θ(y) − log π_ref(y)] needs samples from π_θ itself: at an
    evaluate.temperature or top_p other than 1 it is not computed (kl is null)."""
    ev = cfg.evaluate
    with_kl = ev.temperature == 1.0 and ev.top_p == 1.0
    if not with_kl:
        warnings.warn(f"evaluate.temperature={ev.temperature}, evaluate.top_p={ev.top_p}: samples are not drawn "
                      "from the aligned policy itself, so no KL is reported; set both to 1 for a KL estimate",
                      stacklevel=2)
    heldout = split_prompts(prompts, "heldout")
    progress.phase(heldout.num_rows * ev.samples_per_prompt, "responses")
    aligned = (kl_samples(heldout, aligned_path, ref_path, cfg, progress) if with_kl
               else _policy_samples(heldout, aligned_path, cfg, {}, progress))
    sft = sft.sort_by([("prompt_id", "ascending"), ("sample_idx", "ascending")])
    if _keys(sft) != _keys(aligned):
        raise RuntimeError(f"evaluation sampled {aligned.num_rows} aligned responses that do not match the "
                           f"{sft.num_rows} SFT ones (prompt_id, sample_idx): rerun the evaluate_sft stage")
    kl = (pc.subtract(aligned["policy_logprob"], aligned["ref_logprob"]) if with_kl
          else pa.nulls(aligned.num_rows, pa.float64()))
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
        "heldout_prompts": float(heldout.num_rows),
        "aligned_response_tokens": mean(aligned["num_tokens"].to_pylist()),
        "sft_response_tokens": mean(sft["num_tokens"].to_pylist()),
    }
    if with_kl:
        metrics["kl"] = mean(table["kl"].to_pylist())
    return table, metrics


def _keys(table: pa.Table) -> list[tuple[str, int]]:
    return list(zip(table["prompt_id"].to_pylist(), table["sample_idx"].to_pylist()))
