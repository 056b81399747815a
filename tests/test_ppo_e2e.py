"""The ppo stage on the tiny model: real Ray Train + DeepSpeed (policy and critic), an in-process
vLLM-CPU engine that gets the new weights every step, VADER rewards, live MLflow step metrics."""

from __future__ import annotations

import json
import math

import mlflow
import pytest

from rayalign.config import load_config
from rayalign.pipeline.runner import run_pipeline
from tests.conftest import crash_after_first_checkpoint, tiny_overrides

pytestmark = pytest.mark.e2e

PPO = ["name=tiny_ppo", "ppo.enabled=true", "ppo.steps=2", "ppo.prompts_per_step=4", "ppo.responses_per_prompt=2",
       "ppo.ppo_epochs=2", "ppo.micro_batch_size=4", "ppo.learning_rate=1e-3", "ppo.critic_learning_rate=1e-3",
       "ppo.resources.torch_threads=1"]


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory, tiny_model, prompts_file, ray_local):
    """Two workers under ZeRO-3: each samples with its own vLLM engine, the rollout is whitened and
    the gradients averaged over both, and the sync gathers the sharded weights."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny_ppo"
    cfg = load_config("default", tiny_overrides(tiny_model, prompts_file) + PPO + [
        "ppo.resources.num_workers=2", "ppo.zero_stage=3"])
    summary = run_pipeline(cfg, run_dir, log=lambda _: None)
    return cfg, run_dir, summary


def test_ppo_replaces_the_offline_path_and_is_evaluated(ppo_run):
    from transformers import AutoModelForCausalLM

    _, run_dir, summary = ppo_run
    assert list(summary["stage_seconds"]) == ["prompts", "evaluate_sft", "ppo", "evaluate"]
    assert summary["aligned_model"] == str(run_dir / "ppo" / "model") and "pairs" not in summary
    AutoModelForCausalLM.from_pretrained(run_dir / "ppo" / "model")
    assert math.isfinite(summary["win_rate"]) and summary["kl"] is not None


def test_every_step_logs_its_metrics_live(ppo_run):
    cfg, run_dir, summary = ppo_run
    steps = [json.loads(x) for x in (run_dir / "ppo" / "train_metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2]
    for s in steps:
        assert all(math.isfinite(v) for v in s.values())
        assert s["weight_sync_s"] > 0 and 0 <= s["clip_fraction"] <= 1 and s["kl_coef"] == cfg.ppo.kl_coef
        assert s["grad_norm"] > 0
        assert s["rollouts"] == 4 * 2  # both workers' responses: 2 prompts × 2 each
        assert 0 < s["entropy"] < math.log(384)  # at most uniform over the tiny vocabulary (≤ 384)
    assert steps[0]["kl"] == pytest.approx(0.0, abs=1e-3)  # the policy starts as the reference
    assert steps[1]["kl"] > steps[0]["kl"]  # step 2 samples with the weights step 1 trained
    client = mlflow.MlflowClient(summary["tracking_uri"])
    history = client.get_metric_history(summary["mlflow_run_id"], "ppo/reward_mean")
    assert [m.step for m in history] == [1, 2]
    assert [m.value for m in history] == pytest.approx([s["reward_mean"] for s in steps])
    assert "ppo/reward_vs_kl.png" in [a.path for a in client.list_artifacts(summary["mlflow_run_id"], "ppo")]


def test_a_killed_ppo_stage_resumes_from_its_checkpoint(tmp_path, tiny_model, tiny_reward_model, prompts_file,
                                                       ray_local):
    """Killed after step 1's checkpoint, rerun: step 1 is restored (not recomputed) and steps 2 and 3
    follow, with the KL coefficient and vLLM's weights as they were. Rewards come from a reward
    model here, which also starts the critic."""
    import pyarrow as pa
    import ray
    from ray.train import TrainingFailedError

    from rayalign.actors.rewards import RewardModelScorer
    from rayalign.actors.sampler import sampler_kwargs
    from rayalign.training.trainer import fit

    cfg = load_config("default", tiny_overrides(tiny_model, prompts_file) + PPO + [
        "ppo.steps=3", "ppo.checkpoint_every_steps=1", "ppo.keep_checkpoints=1", "ppo.kl_target=1.0",
        "ppo.kl_horizon=10", "ppo.resources.max_failures=0"])  # the stage dies (a worker restart: test_faults)
    prompts = pa.table({"prompt_id": [f"p{i}" for i in range(4)],
                        "prompt": [f"review {i}: the film" for i in range(4)]})
    loop_config = {"model_path": tiny_model, "reference_path": tiny_model, "critic_path": tiny_reward_model,
                   "scorer": (RewardModelScorer, {"model_path": tiny_reward_model}), "tracking": None,
                   "sampler": sampler_kwargs(tiny_model, cfg.sample, "float32", n=2, seed=0, stream="ppo",
                                             temperature=1.0, top_p=1.0),
                   "loop": "rayalign.training.ppo:train_loop", "crash_marker": str(tmp_path / "crashed")}
    with pytest.raises(TrainingFailedError):
        fit(crash_after_first_checkpoint, loop_config, cfg.ppo, ray.data.from_arrow(prompts), "ppo-resume", tmp_path,
            tmp_path / "a")
    saved = sorted((tmp_path / "ray_train" / "ppo-resume").glob("step_*/train_metrics.jsonl"))
    before = [json.loads(x) for x in saved[-1].read_text().splitlines()]
    assert [s["step"] for s in before] == [1]
    (tmp_path / "b").mkdir()
    steps = fit(crash_after_first_checkpoint, loop_config, cfg.ppo, ray.data.from_arrow(prompts), "ppo-resume",
                tmp_path, tmp_path / "b")
    assert [s["step"] for s in steps] == [1, 2, 3]
    assert steps[0] == before[0]  # restored from the checkpoint, not recomputed
    # The adaptive coefficient carried over: step 2 used what step 1's update left.
    expected = cfg.ppo.kl_coef * (1 + max(-0.2, min(0.2, before[0]["kl"] / 1.0 - 1)) * 8 / 10)
    assert steps[1]["kl_coef"] == pytest.approx(expected)
