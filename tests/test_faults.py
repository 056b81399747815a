"""Faults survived, each by really killing a process with SIGKILL by its own pid, on the tiny model:
a vLLM sampling actor and a reward-model scoring actor mid-stage (Ray Data restarts the actor and
retries its batch: nothing lost, nothing twice), and a Ray Train worker mid-training (the worker
group restarts from the newest checkpoint and the step count goes on). The driver killed mid-run:
tests/test_pipeline_e2e.py (the rounds test); killed between a stage's write and its publish:
tests/test_store.py."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

from rayalign.actors.reward_model import RewardModelScorer
from rayalign.actors.runtime import map_with_actors
from rayalign.actors.sampler import VLLMSampler, sampler_kwargs
from rayalign.config import ActorResources, TrainConfig, load_config
from rayalign.data import schemas
from tests.conftest import tiny_overrides

pytestmark = pytest.mark.e2e


def die_once(marker: Path) -> None:
    """SIGKILL this process, the first time only: the marker outlives it, with the dead process's pid."""
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)


def dying_in_its_second_batch(actor: type, pid_column: str) -> type:
    """`actor` (a stage's Ray Data actor class), killed in its second batch, once; its rows say which
    process made them (`pid_column`)."""
    class Dying(actor):
        def __init__(self, crash_marker: str, **kwargs):
            super().__init__(**kwargs)
            self.marker, self.calls = Path(crash_marker), 0

        def __call__(self, batch: pa.Table) -> pa.Table:
            self.calls += 1
            if self.calls == 2:
                die_once(self.marker)
            out = super().__call__(batch)
            return out.append_column(pid_column, pa.array([os.getpid()] * out.num_rows))
    Dying.__name__ = f"Dying{actor.__name__}"
    return Dying


DyingSampler = dying_in_its_second_batch(VLLMSampler, "sampler_pid")  # the sample stage's vLLM actor
DyingScorer = dying_in_its_second_batch(RewardModelScorer, "scorer_pid")  # the score stage's reward model


def test_killed_sampling_and_scoring_actors_are_restarted_and_lose_no_row(tmp_path, tiny_model, tiny_reward_model,
                                                                         prompts_file, ray_local):
    import ray

    cfg = load_config("default", tiny_overrides(tiny_model, prompts_file))
    k = cfg.sample.k
    # Three blocks of two prompts: one actor task each, so each pool's second task meets the kill.
    prompts = ray.data.from_arrow([pa.table({"prompt_id": [f"p{i}", f"p{i + 1}"],
                                             "prompt": [f"review {i}: the film", f"review {i + 1}: a story"]})
                                   for i in (0, 2, 4)])
    # One restart and one retry suffice; the defaults (3, 3) are bounded too.
    res = ActorResources(batch_size=2, torch_threads=1, max_restarts=1, max_task_retries=1)
    sampled = map_with_actors(prompts, DyingSampler, {
        **sampler_kwargs(tiny_model, cfg.sample, "float32", n=k, seed=0, stream="sample", temperature=1.0,
                         top_p=1.0), "crash_marker": str(tmp_path / "sampler-killed")}, res)
    scored = map_with_actors(sampled, DyingScorer, {"model_path": tiny_reward_model,
                                                     "crash_marker": str(tmp_path / "scorer-killed")}, res)
    rows = scored.take_all()
    # Each pool's actor died in its second batch; restarted actors (new processes) made the rest. The
    # dead one's first batch may be in the output or recomputed, as Ray still held its result or not.
    for column, marker in (("sampler_pid", "sampler-killed"), ("scorer_pid", "scorer-killed")):
        killed = int((tmp_path / marker).read_text())
        assert {r[column] for r in rows} - {killed}, column
    keys = [(r["prompt_id"], r["sample_idx"]) for r in rows]
    assert len(keys) == len(set(keys)) == 6 * k  # nothing lost, nothing twice
    assert Counter(pid for pid, _ in keys) == {f"p{i}": k for i in range(6)}
    assert all(isinstance(r["reward"], float) for r in rows)


def die_at_the_second_checkpoint(loop_config: dict) -> None:
    """The train stage's worker loop, SIGKILLed as it is about to report its second checkpoint, once;
    each start records whether Ray Train handed it a checkpoint to resume from. The kill waits a few
    seconds: Ray Train's controller collects reported checkpoints when it polls the workers (about
    every 2 s), so one reported just before a worker dies can be lost, and the group then resumes
    from the one before."""
    import ray.train

    from rayalign.training.preference import train_loop

    marker = Path(loop_config["crash_marker"])
    start = ray.train.get_checkpoint()
    with open(marker.with_suffix(".starts"), "a") as f:
        f.write(json.dumps(Path(start.path).name if start else None) + "\n")
    report, checkpoints = ray.train.report, [0]

    def dying_report(metrics, checkpoint=None, **kwargs):
        if checkpoint is not None and not metrics.get("final"):
            checkpoints[0] += 1
            if checkpoints[0] == 2 and not marker.exists():
                time.sleep(5)  # the first checkpoint reaches the controller
                die_once(marker)
        report(metrics, checkpoint=checkpoint, **kwargs)

    ray.train.report = dying_report
    train_loop(loop_config)


def test_a_killed_train_worker_restarts_from_the_newest_checkpoint(tmp_path, tiny_model, ray_local):
    import ray
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rayalign.training.loop import planned_steps
    from rayalign.training.trainer import fit

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    ids = [tokenizer(text)["input_ids"] for text in ("the film", "was good", "was bad", "a great story")]
    pairs = pa.Table.from_pylist([{
        "prompt_id": f"p{i}", "prompt": "the film", "prompt_token_ids": ids[0], "chosen": "was good",
        "rejected": "was bad", "chosen_token_ids": ids[1 + i % 3], "rejected_token_ids": ids[1 + (i + 1) % 3],
        "chosen_reward": 1.0, "rejected_reward": 0.0, "chosen_ref_logprob": -8.0, "rejected_ref_logprob": -9.0,
        "strategy": "rs_dpo"} for i in range(8)], schema=schemas.PAIRS)
    # The defaults restart a dead worker group once (max_failures = 1).
    cfg = TrainConfig(micro_batch_size=2, learning_rate=1e-3, checkpoint_every_steps=1,
                      resources={"torch_threads": 1})
    assert cfg.resources.max_failures == 1
    marker = tmp_path / "worker-killed"
    (tmp_path / "out").mkdir()
    history = fit(die_at_the_second_checkpoint, {"model_path": tiny_model, "use_reference": True,
                                                 "crash_marker": str(marker)},
                  cfg, ray.data.from_arrow(pairs), "worker-kill", tmp_path, tmp_path / "out")
    assert marker.exists()
    starts = [json.loads(line) for line in marker.with_suffix(".starts").read_text().splitlines()]
    assert starts == [None, "step_000001"]  # the restarted group resumed from step 1's checkpoint
    # As an uninterrupted run: every planned step once, in order, and a model of the same shape.
    assert [h["step"] for h in history] == list(range(1, planned_steps(pairs.num_rows, cfg) + 1)) == [1, 2, 3, 4]
    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "model")
    initial = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert {n: p.shape for n, p in trained.named_parameters()} == {n: p.shape for n, p in initial.named_parameters()}
