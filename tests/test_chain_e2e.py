"""The rs_dpo_chain preset on the tiny model: SFT → labels → reward model → RS-DPO → evaluation,
and resuming a killed training stage from its checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from rayalign.annotator import gold_agreement
from rayalign.config import load_config
from rayalign.data.parquet import read_table
from rayalign.pipeline.stages import PIPELINE
from rayalign.pipeline.graph import plan
from rayalign.pipeline.runner import run_pipeline
from tests.conftest import crash_after_first_checkpoint, tiny_overrides

pytestmark = pytest.mark.e2e


def chain_overrides(model: str, prompts: str, sft: str) -> list[str]:
    return tiny_overrides(model, prompts) + [
        "name=tiny_chain", "score.reward=reward_model", "select.tau=0.5",
        "sft.enabled=true", f"sft.data={sft}", "sft.learning_rate=1e-3", "sft.micro_batch_size=4", "sft.epochs=2",
        "sft.resources.torch_threads=1",
        # Noiseless labels of word salad by VADER: a reward a bag of words can fit.
        "label.k=4", "label.pairs_per_prompt=6", "label.temperature=0",
        # Rejection sampling on 6 of the 11 training prompts, labels on all 11.
        "data.max_train_prompts=6", "label.max_train_prompts=11",
        "reward_model.enabled=true", "reward_model.learning_rate=1e-3", "reward_model.epochs=2",
        "reward_model.micro_batch_size=8", "reward_model.checkpoint_every_steps=9", "reward_model.keep_checkpoints=1",
        "reward_model.resources.torch_threads=1",
        # Evaluation is the default pipeline's (tests/test_pipeline_e2e.py); the chain ends with training.
        "evaluate.enabled=false",
        # The preset's own setting (the SFT policy samples and is the reference): the reference
        # forward, which the other end-to-end runs compare with vLLM, costs an actor start here.
        "reference.reuse_sampler_logprobs=true",
    ]


@pytest.fixture(scope="module")
def chain_run(tmp_path_factory, tiny_model, prompts_file, sft_file, ray_local):
    run_dir = tmp_path_factory.mktemp("runs") / "tiny_chain"
    cfg = load_config("rs_dpo_chain", chain_overrides(tiny_model, prompts_file, sft_file))
    logs: list[str] = []
    summary = run_pipeline(cfg, run_dir, log=logs.append)
    return cfg, run_dir, summary, logs


def history(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / "train_metrics.jsonl").read_text().splitlines()]


def test_chain_runs_every_stage(chain_run):
    cfg, run_dir, summary, logs = chain_run
    assert list(summary["stage_seconds"]) == [node.id for node in plan(cfg, PIPELINE)] == [
        "prompts", "sft", "label_sample", "label", "reward_model", "sample", "reference", "score", "select",
        "train"]
    assert sum("running" in line for line in logs) == 10


def test_sft_learns_the_demonstrations(chain_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, run_dir, summary, _ = chain_run
    steps = history(run_dir / "sft")
    assert steps[-1]["loss"] < 0.9 * steps[0]["loss"]
    assert all(0 <= s["padding_fraction"] < 1 for s in steps)
    AutoModelForCausalLM.from_pretrained(run_dir / "sft" / "model")
    AutoTokenizer.from_pretrained(run_dir / "sft" / "model")
    # The SFT model is the policy that samples and the reference the DPO loss uses.
    assert summary["sft_model"] == str(run_dir / "sft" / "model")
    # Ray Train's checkpoints (the reward model's: one an epoch) are removed once a stage's model is in place.
    assert not list((run_dir / "ray_train").iterdir())


def test_labels_train_the_reward_model_that_scores(chain_run):
    from transformers import AutoModelForSequenceClassification

    _, run_dir, summary, _ = chain_run
    labels = read_table(run_dir / "label")
    assert set(labels["split"].to_pylist()) == {"train", "heldout"}
    label_train = set(labels.filter(pc.equal(labels["split"], "train"))["prompt_id"].to_pylist())
    run_train = set(read_table(run_dir / "sample")["prompt_id"].to_pylist())
    assert len(run_train) == 6 and run_train < label_train and len(label_train) == 11
    # The same SFT policy, prompts and seeds (both 0), but separate random streams: rejection sampling
    # must not pick among the very responses whose gold labels trained the reward model.
    def responses(stage):
        return {(r["prompt_id"], r["sample_idx"]): r["response"] for r in read_table(run_dir / stage).to_pylist()}

    labelled, sampled = responses("label_sample"), responses("sample")
    same = [sampled[key] == labelled[key] for key in sampled]
    assert len(same) == 6 * 4 and sum(same) < len(same) / 2
    # Noiseless labels: the higher gold reward is chosen (ties either way).
    assert all(c >= r for c, r in zip(labels["chosen_gold"].to_pylist(), labels["rejected_gold"].to_pylist()))
    rm = AutoModelForSequenceClassification.from_pretrained(run_dir / "reward_model" / "model")
    assert rm.config.num_labels == 1
    held = read_table(run_dir / "reward_model")
    assert held.num_rows == labels.filter(pc.equal(labels["split"], "heldout")).num_rows
    assert {"chosen_score", "rejected_score"} <= set(held.column_names)
    chosen, rejected = held["chosen_score"].to_pylist(), held["rejected_score"].to_pylist()
    assert summary["rm_heldout_accuracy"] == pytest.approx(sum(c > r for c, r in zip(chosen, rejected)) / len(chosen))
    assert summary["rm_gold_agreement"] == pytest.approx(gold_agreement(
        chosen, rejected, held["chosen_gold"].to_pylist(), held["rejected_gold"].to_pylist()))
    scores = read_table(run_dir / "score")
    assert set(scores["reward_model"].to_pylist()) == {"model"}  # the trained reward model scored


def test_mlflow_links_the_chain_by_lineage(chain_run):
    _, run_dir, summary, _ = chain_run
    client = mlflow.MlflowClient(summary["tracking_uri"])
    parent = client.get_run(summary["mlflow_run_id"])
    assert parent.data.metrics["rm_gold_agreement"] == pytest.approx(summary["rm_gold_agreement"])
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    runs = {r.data.tags["rayalign.stage"]: r for r in children}
    assert set(runs) == {"sft", "reward_model", "train"}
    tags = {stage: r.data.tags for stage, r in runs.items()}
    # Each run names what it consumed; what one produced is what the next consumed.
    assert tags["reward_model"]["rayalign.consumed.backbone"] == tags["sft"]["rayalign.produced.model"]
    assert tags["train"]["rayalign.consumed.policy"] == tags["sft"]["rayalign.produced.model"]
    assert tags["train"]["rayalign.consumed.reward_model"] == tags["reward_model"]["rayalign.produced.model"]
    assert runs["reward_model"].data.params["learning_rate"] == "0.001"
    # Step metrics: live in the pipeline's run as '<stage>/<name>', in each nested run as TRL names them.
    assert client.get_metric_history(runs["sft"].info.run_id, "loss")
    assert len(client.get_metric_history(parent.info.run_id, "sft/loss")) == len(
        client.get_metric_history(runs["sft"].info.run_id, "loss"))
    assert {d.dataset.name for d in runs["reward_model"].inputs.dataset_inputs} == {"preferences"}


def toy_preferences(n: int) -> pa.Table:
    """Praise preferred over complaints: separable by the words alone."""
    good, bad = "great wonderful love amazing excellent superb".split(), "terrible awful boring bad hate worst".split()
    return pa.Table.from_pylist([
        {"prompt": f"review {i}: the film was", "chosen": " ".join(good[(i + j) % 6] for j in range(3)),
         "rejected": " ".join(bad[(i * 5 + j) % 6] for j in range(3))} for i in range(n)])


def test_reward_model_resumes_after_a_kill_and_separates_toy_preferences(tmp_path, tiny_model, prompts_file,
                                                                         ray_local):
    """A reward-model stage killed after its first checkpoint, rerun, continues from there; the
    model it ends with ranks held-out toy pairs far above chance (0.5)."""
    import ray
    from ray.train import TrainingFailedError

    from rayalign.actors.rewards import RewardModelScorer
    from rayalign.training.trainer import fit

    cfg = load_config("default", tiny_overrides(tiny_model, prompts_file) + [
        "reward_model.learning_rate=1e-3", "reward_model.epochs=3", "reward_model.checkpoint_every_steps=4",
        "reward_model.keep_checkpoints=2", "reward_model.resources.torch_threads=1",
        "reward_model.resources.max_failures=0"]).reward_model  # the stage dies (a worker restart: test_faults)
    pairs, heldout = toy_preferences(40), toy_preferences(60).slice(40)
    data = ray.data.from_arrow(pairs)
    loop_config = {"model_path": tiny_model, "loop": "rayalign.training.reward_model:train_loop",
                   "crash_marker": str(tmp_path / "crashed")}
    with pytest.raises(TrainingFailedError):
        fit(crash_after_first_checkpoint, loop_config, cfg, data, "resume-test", tmp_path, tmp_path / "a")
    saved = sorted((tmp_path / "ray_train" / "resume-test").glob("step_*/train_metrics.jsonl"))
    before = [json.loads(x) for x in saved[-1].read_text().splitlines()]
    assert len(before) == 4
    (tmp_path / "b").mkdir()
    steps = fit(crash_after_first_checkpoint, loop_config, cfg, data, "resume-test", tmp_path, tmp_path / "b")
    assert [s["step"] for s in steps] == list(range(1, 3 * 40 // cfg.micro_batch_size + 1))
    assert steps[:4] == before  # restored from the checkpoint, not recomputed
    assert [s["examples"] for s in steps] == [cfg.micro_batch_size] * len(steps)  # 40 pairs × 3 epochs, once each
    assert not (tmp_path / "ray_train" / "resume-test").exists()  # checkpoints go once the model is out
    scorer = RewardModelScorer(str(tmp_path / "b" / "model"))
    chosen = scorer.score(heldout["prompt"].to_pylist(), heldout["chosen"].to_pylist())
    rejected = scorer.score(heldout["prompt"].to_pylist(), heldout["rejected"].to_pylist())
    assert sum(c > r for c, r in zip(chosen, rejected)) / len(chosen) >= 0.8

