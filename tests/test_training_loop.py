"""The worker loop's schedule: warm-up, optimizer steps over a fixed data order, example weights,
and resuming after a kill — on real Ray Data iterators."""

from __future__ import annotations

import random
import time

import pyarrow as pa
import pytest

from rayalign.config import TrainerConfig
from rayalign.training.deepspeed_config import deepspeed_config
from rayalign.training.loop import (CheckpointClock, _step_stats, example_weight, optimizer_steps, rank_slice,
                                    training_steps, warmup_factor)
from rayalign.training.trainer import shuffled, train_data_config
from tests.conftest import free_port


def test_warmup_reaches_the_full_rate_at_step_w():
    # W = 2: steps 1, 2, 3 (0-based 0, 1, 2) run at lr·1/2, lr, lr; DeepSpeed's WarmupLR ran 0, 0, lr/2.
    assert [warmup_factor(s, 2) for s in range(3)] == [0.5, 1.0, 1.0]
    assert [warmup_factor(s, 3) for s in range(4)] == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])
    assert warmup_factor(0, 0) == 1.0
    assert "scheduler" not in deepspeed_config(TrainerConfig(warmup_steps=3), 1)


def test_step_statistics_weigh_micro_batches_by_examples_whether_tensors_or_numbers():
    import torch

    micro = [{"loss": torch.tensor(1.0), "tokens": 10.0, "examples": 2},
             {"loss": torch.tensor(4.0), "tokens": 5.0, "examples": 1}]
    assert _step_stats(micro, torch.device("cpu")) == {"loss": 2.0, "tokens": 15.0, "examples": 3.0}
    assert _step_stats([{"loss": 0.5, "tokens": 3, "examples": 1}], torch.device("cpu"))["loss"] == 0.5


def test_checkpoints_come_every_n_steps_and_after_every_m_minutes(monkeypatch):
    import torch

    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    clock = CheckpointClock(TrainerConfig(checkpoint_every_steps=3, checkpoint_every_minutes=2), 1, torch.device("cpu"))
    due = []
    for step in range(1, 8):  # steps of 50 s: 2 minutes since the last save first pass at step 3 (150 s)
        now[0] += 50
        due.append(clock.due(step))
    # Step 3 by both rules; 6 by steps (only 150 s after 3); none by time in between: the clock restarts at each save.
    assert due == [False, False, True, False, False, True, False]
    slow = CheckpointClock(TrainerConfig(checkpoint_every_minutes=2), 1, torch.device("cpu"))
    due = []
    for step in range(1, 6):
        now[0] += 70
        due.append(slow.due(step))
    assert due == [False, True, False, True, False]  # 140 s, then 140 s after that save
    assert not CheckpointClock(TrainerConfig(checkpoint_every_minutes=0), 1, torch.device("cpu")).due(1)
    assert TrainerConfig().checkpoint_every_minutes > 0 and TrainerConfig().resources.max_failures >= 1


def _rows(table: pa.Table) -> list[int]:
    return table["row"].to_pylist()


def test_leftover_micro_batches_make_a_shorter_last_step():
    # 5 rows, micro-batches of 2, 2 per step: steps [2, 2] and [1]; nothing dropped.
    batches = [pa.table({"row": r}) for r in ([0, 1], [2, 3], [4])]
    steps = list(optimizer_steps(batches, accumulation=2, world=1, rank=0))
    assert [[_rows(b) for b in micro] for micro, _ in steps] == [[[0, 1], [2, 3]], [[4]]]
    assert [rows for _, rows in steps] == [4, 1]
    # The last step's one example weighs as much in its step as each of the first step's four in theirs.
    assert example_weight(2, 1, 4) == 0.5 and example_weight(1, 1, 1) == 1.0


def test_two_ranks_split_each_global_micro_batch():
    # Global micro-batches of 2 × 2 rows, the last one of 3 (rank 0 gets 1, rank 1 gets 2), then 1 row:
    # fewer than the ranks, skipped.
    batches = [pa.table({"row": r}) for r in ([0, 1, 2, 3], [4, 5, 6], [7])]
    ranks = [list(optimizer_steps(batches, accumulation=1, world=2, rank=r)) for r in (0, 1)]
    assert [_rows(micro[0]) for micro, _ in ranks[0]] == [[0, 1], [4]]
    assert [_rows(micro[0]) for micro, _ in ranks[1]] == [[2, 3], [5, 6]]
    assert [rows for _, rows in ranks[0]] == [4, 3]
    assert rank_slice(4, 2, 1) == (2, 2)
    # DeepSpeed averages the two ranks: (1/2)(w0·mean0 + w1·mean1) with w = rows·2/3 gives Σ/3 per example.
    assert example_weight(1, 2, 3) == pytest.approx(2 / 3) and example_weight(2, 2, 3) == pytest.approx(4 / 3)


def _jitter(batch: pa.Table) -> pa.Table:
    # Blocks that take uneven times, as real tasks do: without preserve_order they arrive out of order.
    time.sleep(random.random() / 20)
    return batch


def _iterator(table: pa.Table):
    """The iterator a Ray Train worker gets for the stage's dataset, built by trainer.fit's own config."""
    ds = shuffled(table, seed=7).repartition(8).map_batches(_jitter, batch_format="pyarrow", batch_size=None)
    [worker] = train_data_config().configure({"train": ds}, world_size=1, worker_handles=None, worker_node_ids=None)
    return worker["train"]


def test_a_resumed_run_sees_every_example_as_often_as_an_uninterrupted_one(ray_local):
    table = pa.table({"row": list(range(37))})
    cfg = TrainerConfig(epochs=2, micro_batch_size=4, gradient_accumulation_steps=2)

    def seen(steps):
        return [(epoch, [_rows(b) for b in micro]) for epoch, micro, _ in steps]

    full = seen(training_steps(_iterator(table), cfg, world=1, rank=0))
    assert len(full) == 2 * 5  # per epoch: 10 micro-batches (the last of 1 row), 5 steps
    killed_after = 3
    first = seen(training_steps(_iterator(table), cfg, world=1, rank=0))[:killed_after]
    resumed = seen(training_steps(_iterator(table), cfg, world=1, rank=0, done=killed_after))
    assert first + resumed == full
    per_epoch = [sorted(r for e, micro in full if e == epoch for b in micro for r in b) for epoch in (0, 1)]
    assert per_epoch == [list(range(37))] * 2
    assert [r for _, micro in full[:5] for b in micro for r in b] != list(range(37))  # shuffled


@pytest.fixture(scope="module")
def one_process_group():
    """A world of one (gloo), as DeepSpeed finds it inside a Ray Train worker; once per module, as
    DeepSpeed keeps its process groups for the life of the process."""
    import os

    import torch.distributed

    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "DS_ACCELERATOR": "cpu"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    torch.distributed.init_process_group("gloo", rank=0, world_size=1)
    yield
    torch.distributed.destroy_process_group()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k)
        else:
            os.environ[k] = v


@pytest.mark.parametrize("zero_stage", [0, 1])
def test_grad_norm_is_the_norm_before_clipping(one_process_group, zero_stage):
    """loss = 3·w₀ + 4·w₁ has the gradient (3, 4), of norm 5, clipped to norm 1: the logged norm is 5
    whether DeepSpeed clips (ZeRO-1) or the loop does (ZeRO-0 in fp32), and the step applied is the
    clipped one either way."""
    import torch

    from rayalign.training.loop import deepspeed_engine, grad_norm

    model = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    cfg = TrainerConfig(zero_stage=zero_stage, max_grad_norm=1.0, learning_rate=0.1, weight_decay=0.0,
                        micro_batch_size=1, gradient_accumulation_steps=1)
    engine = deepspeed_engine(model, cfg, world=1)
    reduced = []
    engine.buffered_allreduce_fallback = lambda *_, **__: reduced.append(1)  # ZeRO-0's all-reduce
    seen = []
    engine.basic_optimizer.register_step_pre_hook(
        lambda opt, *_: seen.append(torch.cat([p.grad.flatten() for g in opt.param_groups for p in g["params"]])))
    engine.backward(engine(torch.tensor([[3.0, 4.0]])).sum(), scale_wrt_gas=False)
    engine.step()
    assert grad_norm(engine) == pytest.approx(5.0)
    assert seen[0].tolist() == pytest.approx([0.6, 0.8])  # the optimizer got the clipped gradient
    assert not reduced  # a world of one averages nothing: no copy of every gradient through a bucket
    engine.destroy()


def test_gradient_checkpointing_recomputes_to_the_same_gradients(one_process_group, tiny_model):
    """train.gradient_checkpointing turns transformers' checkpointing on in the DeepSpeed engine's
    model (whose MLPs and norms recompute their elementwise intermediates too), and a
    shared-prompt pair step through the engine (its 4D mask, position ids and logits_to_keep
    passed on) gives the gradients of the same model without either."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    from rayalign.lm_head import plain_head
    from rayalign.logprobs import pair_logprobs
    from rayalign.training.loop import deepspeed_engine

    model = AutoModelForCausalLM.from_pretrained(tiny_model)  # in eval mode, as every stage loads it
    plain = copy.deepcopy(model)
    cfg = TrainerConfig(gradient_checkpointing=True, micro_batch_size=2, zero_stage=0)
    engine = deepspeed_engine(model, cfg, world=1)
    assert engine.module.training and engine.module.is_gradient_checkpointing and not plain.is_gradient_checkpointing
    assert all("forward" in vars(layer.mlp) for layer in model.model.layers)  # recompute_activations'
    plain_head(engine)  # its one-off check forwards outside training
    calls = []
    # A pre-hook: the recompute stops early, inside the layer, once it has what the backward needs.
    model.model.layers[0].mlp.register_forward_pre_hook(lambda *_: calls.append(1))
    pairs = ([[1, 20, 30], [1, 40]], [[50, 60], [70, 80, 90]], [[55, 56, 57], [75]])
    chosen, rejected = pair_logprobs(engine, *pairs, pad_id=0, device="cpu")
    assert len(calls) == 1
    engine.backward((chosen - rejected).sum(), scale_wrt_gas=False)
    assert len(calls) == 2  # the backward ran the layer again: its activations were not kept
    expected_chosen, expected_rejected = pair_logprobs(plain, *pairs, pad_id=0, device="cpu")
    (expected_chosen - expected_rejected).sum().backward()
    assert chosen.tolist() == pytest.approx(expected_chosen.tolist(), abs=1e-5)
    for (name, got), want in zip(model.named_parameters(), plain.parameters()):
        torch.testing.assert_close(got.grad, want.grad, atol=1e-5, rtol=1e-4, msg=name)
    engine.destroy()


def test_preference_training_turns_dropout_off(tmp_path):
    """GPT-2 drops out by default (p 0.1): two forward passes in training mode differ until the
    dropout is off, as in TRL's DPO, reward and PPO trainers."""
    import torch
    from transformers import AutoModelForCausalLM

    from rayalign.training.loop import without_dropout
    from tests.conftest import save_tiny

    model = AutoModelForCausalLM.from_pretrained(save_tiny("gpt2", "causal_lm", tmp_path, seed=0)).train()
    ids = torch.tensor([[5, 6, 7, 8]])
    assert not torch.equal(model(ids).logits, model(ids).logits)
    without_dropout(model)
    assert torch.equal(model(ids).logits, model(ids).logits)
