"""Policies and reward models of architectures other than Llama, end to end: a tiny random GPT-2
policy (through vLLM, transformers and DeepSpeed) with Qwen2 reward models scoring the samples and
judging the evaluation — the bring-your-own-everything command of the README's quick start.
tests/test_jobs.py runs its job with a tiny Qwen2 policy, the second architecture."""

from __future__ import annotations

import math

import pytest

import rayalign
from rayalign.data.parquet import read_table
from tests.conftest import assert_vllm_and_transformers_agree, save_tiny, tiny_overrides

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def arch_run(tmp_path_factory, prompts_file, ray_local):
    arch, other = "gpt2", "qwen2"
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
    assert_vllm_and_transformers_agree(arch_run[3])
