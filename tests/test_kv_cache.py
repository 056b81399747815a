"""The CPU KV-cache check against hand-computed sizes, and where it does not apply."""

from __future__ import annotations

import pytest
from transformers import GPT2Config, LlamaConfig, Qwen2Config

from rayalign.config import ConfigError, load_config
from rayalign.kv_cache import check_kv_cache, kv_bytes_per_token

GPT2 = GPT2Config(n_layer=2, n_head=2, n_embd=64)  # head dim 64 / 2 = 32, every head has its keys


@pytest.mark.parametrize("model_config,dtype,expected", [
    (GPT2, "float32", 2 * 2 * 2 * 32 * 4),  # (K and V) × layers × KV heads × head dim × bytes
    (GPT2, "bfloat16", 2 * 2 * 2 * 32 * 2),
    # Grouped queries: 8 query heads share 2 KV heads of dim 128 (head_dim set apart from hidden/heads).
    (LlamaConfig(num_hidden_layers=4, hidden_size=512, num_attention_heads=8, num_key_value_heads=2, head_dim=128),
     "bfloat16", 2 * 4 * 2 * 128 * 2),
    (Qwen2Config(num_hidden_layers=2, hidden_size=64, num_attention_heads=2, num_key_value_heads=1,
                 use_sliding_window=True, sliding_window=32), "float32", None),  # not the plain formula
])
def test_bytes_per_token_by_hand(model_config, dtype, expected):
    assert kv_bytes_per_token(model_config, dtype) == expected


def test_one_sequence_of_max_model_len_must_fit(tmp_path):
    GPT2.save_pretrained(tmp_path)
    fits = 1 << 20  # 1 GiB / 1024 bytes per token
    check_kv_cache(str(tmp_path), "model.policy", load_config("default", [f"sample.max_model_len={fits}"]))
    cfg = load_config("default", [f"sample.max_model_len={fits + 1}"])
    with pytest.raises(ConfigError) as err:
        check_kv_cache(str(tmp_path), "model.policy", cfg)
    message = str(err.value)
    for says in (f"sample.max_model_len={fits + 1}", "1.00 GiB", "model.policy", "1024 bytes per token",
                 "sample.kv_cache_gib=1", "raise sample.kv_cache_gib to 2", f"to {fits - 256} or less"):
        assert says in message, (says, message)
    check_kv_cache(str(tmp_path), "model.policy", load_config("default", [f"sample.max_model_len={fits + 1}",
                                                                           "sample.kv_cache_gib=2"]))
    # On GPUs vLLM sizes its cache from free memory as it starts: nothing to check beforehand.
    check_kv_cache(str(tmp_path), "model.policy", load_config("default", [f"sample.max_model_len={fits + 1}",
                                                                           "sample.resources.num_gpus=1"]))
