"""Policies and reward models of architectures other than Llama, end to end: a tiny random Qwen2
and a tiny random GPT-2, each the policy once (through vLLM, transformers and DeepSpeed), with
reward models of the other architecture scoring the samples and judging the evaluation — the
bring-your-own-everything command of the README's quick start."""

from __future__ import annotations

import math

import pytest

import rayalign
from rayalign.data.parquet import read_table
from tests.conftest import build_tokenizer, tiny_overrides

pytestmark = pytest.mark.e2e


def tiny_config(arch: str, tokenizer, **kw):
    """Two layers, hidden 64, head dim 32 (vLLM's CPU attention supports 32, not 16), tied embeddings."""
    ids = {"eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    if arch == "qwen2":
        from transformers import Qwen2Config

        return Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                           tie_word_embeddings=True, bos_token_id=None, **ids, **kw)
    from transformers import GPT2Config

    return GPT2Config(vocab_size=len(tokenizer), n_positions=256, n_embd=64, n_layer=2, n_head=2,
                      bos_token_id=tokenizer.eos_token_id, **ids, **kw)


def save_tiny(arch: str, head: str, path, seed: int) -> str:
    """A random `arch` checkpoint with a causal-LM head or a one-output sequence-classification head."""
    import torch
    import transformers

    tokenizer = build_tokenizer(path)
    classes = {("qwen2", "causal_lm"): "Qwen2ForCausalLM", ("gpt2", "causal_lm"): "GPT2LMHeadModel",
               ("qwen2", "reward"): "Qwen2ForSequenceClassification",
               ("gpt2", "reward"): "GPT2ForSequenceClassification"}
    torch.manual_seed(seed)
    config = tiny_config(arch, tokenizer, **({"num_labels": 1} if head == "reward" else {}))
    model = getattr(transformers, classes[arch, head])(config)
    model.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module", params=["qwen2", "gpt2"])
def arch_run(request, tmp_path_factory, prompts_file, ray_local):
    arch = request.param
    other = "gpt2" if arch == "qwen2" else "qwen2"
    policy = save_tiny(arch, "causal_lm", tmp_path_factory.mktemp(f"{arch}-policy"), seed=0)
    reward_model = save_tiny(other, "reward", tmp_path_factory.mktemp(f"{other}-rm"), seed=1)
    judge = save_tiny(other, "reward", tmp_path_factory.mktemp(f"{other}-judge"), seed=2)
    run_dir = tmp_path_factory.mktemp("runs") / arch
    summary = rayalign.run("default", tiny_overrides(policy, prompts_file) + [
        "data.instruction='{prompt}'", "score.reward=reward_model", f"score.reward_model_path={reward_model}",
        "evaluate.gold_reward=reward_model", f"evaluate.gold_reward_model_path={judge}"],
        run_dir=run_dir, log=lambda _: None)
    return arch, policy, judge, run_dir, summary


def test_the_pipeline_runs_on_the_architecture(arch_run):
    from transformers import AutoConfig, AutoModelForCausalLM

    from rayalign.actors.rewards import RewardModelScorer

    arch, policy, judge, run_dir, summary = arch_run
    assert summary["pairs"] > 0 and 0 <= summary["win_rate"] <= 1 and math.isfinite(summary["kl"])
    trained = run_dir / "train" / "model"
    assert AutoConfig.from_pretrained(trained).model_type == arch
    AutoModelForCausalLM.from_pretrained(trained)
    # The reward models of the other architecture scored every sample and judged every evaluation
    # response: real numbers, not all equal, and the judge's are not the scorer's.
    rewards = read_table(run_dir / "score")["reward"].to_pylist()
    assert all(math.isfinite(r) for r in rewards) and len(set(rewards)) > 1
    evaluation = read_table(run_dir / "evaluate").to_pylist()
    assert len({row["aligned_reward"] for row in evaluation}) > 1
    first = evaluation[0]
    assert RewardModelScorer(judge).score([first["prompt"]], [first["aligned_response"]]) == pytest.approx(
        [first["aligned_reward"]], abs=1e-4)


def test_vllm_and_transformers_agree_on_the_architecture(arch_run):
    # The reference is the sampling policy: vLLM's log-probs and the training code's forward pass
    # must agree token for token (a wrong position offset, bias or tied head would not).
    ref = read_table(arch_run[3] / "reference")
    for s, r, n in zip(ref["sampler_logprob"].to_pylist(), ref["ref_logprob"].to_pylist(),
                       ref["num_tokens"].to_pylist()):
        assert abs(s - r) < 1e-3 * n + 1e-3
