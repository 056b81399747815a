"""The Ray Train worker loop every training stage shares: a DeepSpeed engine, gradient
accumulation, per-step metrics, resumable checkpoints and the final HF checkpoint.

A stage supplies `build(tokenizer) -> (model, batch_loss)`; batch_loss(engine, batch, device)
returns the mean loss of a micro-batch and its statistics (a "tokens" count among them).
Resumable checkpoints are DeepSpeed checkpoints (weights, optimizer, scheduler) reported to
Ray Train, which keeps the newest N in its storage; a rerun of the same stage (same run name
and storage) or a restarted worker group resumes from the newest one and skips the optimizer
steps it had already taken.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from pathlib import Path

import pyarrow as pa
import torch

from rayalign.actors.runtime import set_torch_threads
from rayalign.config import TrainerConfig
from rayalign.pretrained import load_tokenizer
from rayalign.progress import reporter
from rayalign.recompute import recompute_activations
from rayalign.training.deepspeed_config import deepspeed_clips, deepspeed_config
from rayalign.training.live_metrics import live_logger

METRICS_FILE = "train_metrics.jsonl"
STATE_FILE = "trainer_state.json"
DEEPSPEED_DIR = "deepspeed"
DEEPSPEED_TAG = "state"

BatchLoss = Callable[[torch.nn.Module, dict, torch.device], tuple[torch.Tensor, dict]]


def _set_rank_env(ctx) -> None:
    # DeepSpeed reads these even when Ray Train has already set up the process group.
    os.environ.setdefault("RANK", str(ctx.get_world_rank()))
    os.environ.setdefault("WORLD_SIZE", str(ctx.get_world_size()))
    os.environ.setdefault("LOCAL_RANK", str(ctx.get_local_rank()))
    os.environ.setdefault("LOCAL_WORLD_SIZE", str(ctx.get_local_world_size()))


def without_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with every dropout off, as TRL's DPO, reward and PPO trainers train by default: with
    dropout the policy's log-probs differ from the reference's at the same weights (DPO's first loss
    would not be log 2) and rewards and advantages get noise. SFT keeps the model's dropout."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):  # attention that drops by a rate
            module.attention_dropout = 0.0
    return model


def warmup_factor(step: int, warmup_steps: int) -> float:
    """LR multiplier of optimizer step `step` (0-based): linear warm-up min(1, (step + 1)/W), so the
    first step already learns and step W − 1 reaches the full rate; 1 without warm-up."""
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0


def rank_slice(rows: int, world: int, rank: int) -> tuple[int, int]:
    """(offset, length) of the rows of a global micro-batch of `rows` rows that `rank` trains on:
    equal shares, the remainder spread over the ranks (a full micro-batch gives every rank
    micro_batch_size rows)."""
    start, stop = rank * rows // world, (rank + 1) * rows // world
    return start, stop - start


def optimizer_steps(batches: Iterable[pa.Table], accumulation: int, world: int,
                    rank: int) -> Iterator[tuple[list[pa.Table], int]]:
    """One pass over the training data as optimizer steps: (this rank's micro-batches, rows of the
    whole step over all ranks). `batches` are global micro-batches (micro_batch_size × world rows, in
    the dataset's fixed order); `accumulation` of them make a step and the pass's last step may be
    shorter, so no row is dropped but the rows of a final global micro-batch smaller than the world,
    which cannot give every rank one."""
    def step(group: list[pa.Table]) -> tuple[list[pa.Table], int]:
        return [b.slice(*rank_slice(b.num_rows, world, rank)) for b in group], sum(b.num_rows for b in group)

    group: list[pa.Table] = []
    for batch in batches:
        if batch.num_rows < world:
            print(f"rayalign: {batch.num_rows} leftover row(s) skipped: fewer than the {world} workers", flush=True)
            continue
        group.append(batch)
        if len(group) == accumulation:
            yield step(group)
            group = []
    if group:
        yield step(group)


def training_steps(data, cfg: TrainerConfig, world: int, rank: int,
                   done: int = 0) -> Iterator[tuple[int, list[pa.Table], int]]:
    """(epoch, this rank's micro-batches, rows of the step over all ranks) of every optimizer step of
    the stage after the first `done` (taken before the checkpoint a run resumed from). `data` is a
    Ray Data iterator over the whole dataset in its fixed order (trainer.fit's dataset config)."""
    steps = 0
    for epoch in range(cfg.epochs):
        batches = data.iter_batches(batch_size=cfg.micro_batch_size * world, batch_format="pyarrow")
        for micro_batches, step_rows in optimizer_steps(batches, cfg.gradient_accumulation_steps, world, rank):
            steps += 1
            if steps > done:
                yield epoch, micro_batches, step_rows


def example_weight(rows: int, world: int, step_rows: int) -> float:
    """Factor on a micro-batch's mean loss so that each of the step's `step_rows` examples weighs
    1/step_rows in the step's gradient, however they fall into micro-batches and ranks: the
    micro-batch holds `rows` of them, and DeepSpeed averages the `world` ranks' gradients."""
    return rows * world / step_rows


def _step_stats(micro: list[dict], device) -> dict:
    """A step's statistics over its micro-batches and ranks: means weighted by examples; token and
    example counts add up. Values may be numbers or 0-dim tensors on the device: they are read back
    in one transfer."""
    keys = sorted(k for k in micro[0] if k not in ("tokens", "examples"))
    sums = [sum(s[k] * s["examples"] for s in micro) for k in keys]
    sums += [sum(s["tokens"] for s in micro), sum(s["examples"] for s in micro)]
    t = torch.stack([torch.as_tensor(v, device=device).detach().to(torch.float64) for v in sums])
    if torch.distributed.is_initialized():
        torch.distributed.all_reduce(t)
    sums = t.tolist()
    examples = sums[-1]
    return {**{k: v / examples for k, v in zip(keys, sums)}, "tokens": sums[-2], "examples": examples}


def worker_fit(loop_config: dict, cfg: TrainerConfig,
               build: Callable[[object], tuple[torch.nn.Module, BatchLoss]]) -> None:
    """Train on the "train" dataset and report checkpoints; call from a Ray Train worker.

    Every worker iterates the whole dataset in its fixed order (trainer.fit passes it unsplit, order
    preserved) and trains on its rows of each global micro-batch, so a resumed run skips exactly the
    steps it had done and sees every example as often as an uninterrupted run.
    """
    import ray.train

    rank, world, device = setup_worker(loop_config, cfg)
    tokenizer = load_tokenizer(loop_config["model_path"], loop_config["trust_remote_code"])
    model, batch_loss = build(tokenizer)
    engine = deepspeed_engine(model, cfg, world)
    history, final, _ = resume({DEEPSPEED_DIR: engine})
    if final is not None:  # the run had finished; only its final report was lost
        ray.train.report({**history[-1], "final": 1}, checkpoint=final if rank == 0 else None)
        engine.destroy()
        return
    log = step_logger(loop_config, rank, done=len(history))
    checkpoint = CheckpointClock(cfg, world, device)
    started = time.perf_counter()
    for epoch, micro_batches, step_rows in training_steps(ray.train.get_dataset_shard("train"), cfg, world, rank,
                                                          done=len(history)):
        micro = []
        for batch in micro_batches:
            loss, stats = batch_loss(engine, batch.to_pydict(), device)
            engine.backward(loss * example_weight(batch.num_rows, world, step_rows), scale_wrt_gas=False)
            micro.append({**stats, "examples": batch.num_rows})
        learning_rate = float(engine.get_lr()[0])  # the rate this step applies
        engine.step()
        now = time.perf_counter()
        elapsed, started = now - started, now  # checkpoint time counts against the next step
        step_stats = _step_stats(micro, device)
        step_stats.update(step=len(history) + 1, epoch=epoch, learning_rate=learning_rate,
                          grad_norm=grad_norm(engine), tokens_per_s=step_stats["tokens"] / max(elapsed, 1e-9))
        history.append(step_stats)
        log(step_stats, step_stats["step"])
        # Only checkpoints are reported: ray.train.report waits for the controller's ~2 s poll,
        # which would dominate a GPU step. The step metrics go to MLflow live and travel in the
        # checkpoints' history.
        if checkpoint.due(len(history)):
            report_resumable({DEEPSPEED_DIR: engine}, history, rank)
    if not history:
        raise RuntimeError(f"no optimizer step: the training data has fewer rows than the {world} worker(s); "
                           "give the stage more data or lower resources.num_workers")
    report_final(engine, tokenizer, history, rank, cfg.zero_stage)
    engine.destroy()


def step_logger(loop_config: dict, rank: int, done: int) -> Callable[[dict, int], None]:
    """log(row, step) of a training loop's optimizer steps, from rank 0: the step's metrics live into
    MLflow (loop_config["tracking"]) and a step on the stage's progress bar (loop_config["progress"]),
    where the `done` steps a resumed run skips are already counted."""
    metrics = live_logger(loop_config.get("tracking") if rank == 0 else None)
    count = reporter(loop_config.get("progress") if rank == 0 else None)
    count(done, skipped=True)

    def log(row: dict, step: int) -> None:
        metrics(row, step)
        count(1, int(row.get("tokens") or 0))
    return log


def planned_steps(rows: int, cfg: TrainerConfig) -> int:
    """The optimizer steps training_steps makes of `rows` rows: per epoch, the global micro-batches
    (a last one smaller than the world is skipped) in groups of gradient_accumulation_steps."""
    world = cfg.resources.num_workers
    rows_per_batch = cfg.micro_batch_size * world
    batches = rows // rows_per_batch + (1 if rows % rows_per_batch >= world else 0)
    return cfg.epochs * -(-batches // cfg.gradient_accumulation_steps)


def setup_worker(loop_config: dict, cfg: TrainerConfig) -> tuple[int, int, torch.device]:
    """Threads, the environment DeepSpeed reads, the seed and the device of a Ray Train worker:
    (rank, world size, device)."""
    import ray.train

    set_torch_threads(cfg.resources.torch_threads)
    ctx = ray.train.get_context()
    _set_rank_env(ctx)
    if not cfg.resources.use_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", loop_config["torch_extensions_dir"])
    torch.manual_seed(cfg.seed)
    device = torch.device(f"cuda:{ctx.get_local_rank()}") if cfg.resources.use_gpu else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return ctx.get_world_rank(), ctx.get_world_size(), device


def skip_shm_comm_build() -> None:
    """Keep DeepSpeed's CPU communication backend from JIT-compiling its shared-memory all-reduce op.
    Only tensor-parallel inference (`inference_all_reduce`) uses it, never training; the compile takes
    55-80 s on 2 cores, and torch's extension cache recompiled it whenever processes' build commands
    differed (six times in one day here). DeepSpeed keeps one compatibility table, edits included."""
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def deepspeed_engine(model: torch.nn.Module, cfg: TrainerConfig, world: int):
    """A DeepSpeed engine for `model` with cfg's optimiser, ZeRO stage, precision, clipping, warm-up
    and gradient checkpointing; Llama-style MLPs and norms recompute their elementwise
    intermediates in the backward (recompute.recompute_activations: the same gradients, less memory)."""
    import deepspeed

    if not cfg.resources.use_gpu:
        skip_shm_comm_build()
    # from_pretrained returns a model in eval mode and DeepSpeed leaves the mode as it finds it;
    # transformers checkpoints layers (and drops out, where a stage keeps dropout) in training mode only.
    model.train()
    recompute_activations(model)
    if cfg.gradient_checkpointing:
        # Non-reentrant: the reentrant variant needs inputs that require grad and drops kwargs' grads.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    warmup = functools.partial(warmup_factor, warmup_steps=cfg.warmup_steps)
    engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(),
                                      lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, warmup),
                                      config=deepspeed_config(cfg, world))
    if world == 1 and cfg.zero_stage == 0 and not cfg.bf16:
        # One worker has nothing to average: DeepSpeed would still flatten every gradient into a
        # bucket, all-reduce it over the group of one and copy it back at each step (a transient
        # copy of all gradients and ~4% of a CPU step). ZeRO's and bf16's optimizers keep their
        # own gradient buffers through that path, so only plain ZeRO-0 skips it.
        engine.enable_backward_allreduce = False
    if not deepspeed_clips(cfg):
        # DeepSpeed would clip these gradients but not keep their norm; clip them where it would (after
        # the step's all-reduce, before the optimizer) and keep it.
        params = [p for p in model.parameters() if p.requires_grad]

        def clip(*_) -> None:
            engine.rayalign_grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm))
        engine.basic_optimizer.register_step_pre_hook(clip)
    return engine


def grad_norm(engine) -> float | None:
    """The global gradient norm, before clipping, of the optimizer step `engine` took last (None where
    neither DeepSpeed nor the loop computed one)."""
    norm = engine.get_global_grad_norm()
    norm = norm if norm is not None else getattr(engine, "rayalign_grad_norm", None)
    return None if norm is None else float(norm)


def report_final(engine, tokenizer, history: list[dict], rank: int, zero_stage: int) -> None:
    """Report the final HF checkpoint of `engine`'s model with the step history (trainer.fit copies it out)."""
    import ray.train

    with tempfile.TemporaryDirectory() as tmp:
        _save_hf(engine, tokenizer, Path(tmp), rank, zero_stage)
        checkpoint = None
        if rank == 0:
            _write_state(Path(tmp), history, final=True)
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report({**history[-1], "final": 1}, checkpoint=checkpoint)


def _write_state(folder: Path, history: list[dict], final: bool, extra: dict | None = None) -> None:
    (folder / STATE_FILE).write_text(json.dumps({"steps": len(history), "final": final, "extra": extra or {}}))
    with open(folder / METRICS_FILE, "w") as f:
        f.writelines(json.dumps(h) + "\n" for h in history)


def read_history(folder: Path) -> list[dict]:
    """The per-step metrics a training stage wrote."""
    return [json.loads(line) for line in (Path(folder) / METRICS_FILE).read_text().splitlines()]


class CheckpointClock:
    """When a training loop saves a resumable checkpoint: every checkpoint_every_steps steps, and after
    the first step that ends checkpoint_every_minutes after the last save. Rank 0's clock decides for
    every rank (the ranks save together), at the price of one broadcast per step with several."""

    def __init__(self, cfg: TrainerConfig, world: int, device):
        self.every_steps, self.seconds = cfg.checkpoint_every_steps, cfg.checkpoint_every_minutes * 60
        self.world, self.device, self.last = world, device, time.monotonic()

    def due(self, steps: int) -> bool:
        """Whether to save now, after `steps` optimizer steps."""
        due = bool(self.every_steps) and steps % self.every_steps == 0
        if not due and self.seconds:
            due = time.monotonic() - self.last >= self.seconds
            if self.world > 1:
                late = torch.tensor([float(due)], device=self.device)
                torch.distributed.broadcast(late, src=0)
                due = bool(late.item())
        if due:
            self.last = time.monotonic()
        return due


def report_resumable(engines: dict, history: list[dict], rank: int, extra: dict | None = None) -> None:
    """A resumable checkpoint of several engines (a folder each) and the loop's own state (`extra`,
    JSON): every rank saves its DeepSpeed shards; Ray Train merges them into one checkpoint directory."""
    import ray.train

    with tempfile.TemporaryDirectory() as tmp:
        for folder, engine in engines.items():
            engine.save_checkpoint(str(Path(tmp) / folder), tag=DEEPSPEED_TAG)
        if rank == 0:
            _write_state(Path(tmp), history, final=False, extra=extra)
        ray.train.report(history[-1], checkpoint=ray.train.Checkpoint.from_directory(tmp),
                         checkpoint_dir_name=f"step_{len(history):06d}")


# What DeepSpeed's own checkpoints pickle besides tensors and plain containers (ZeRO optimizer
# states: the loss scaler, the stage, bf16 parameter fragments), found by loading the checkpoints
# of ZeRO 0-3 in fp32 and bf16 with weights_only=True.
DEEPSPEED_CHECKPOINT_CLASSES = ("deepspeed.runtime.fp16.loss_scaler.LossScaler",
                                "deepspeed.runtime.zero.config.ZeroStageEnum",
                                "deepspeed.utils.tensor_fragment.fragment_address")


def read_checkpoints_as_data(engine) -> None:
    """Make `engine` load its checkpoints with torch.load(weights_only=True), allowing only the
    DEEPSPEED_CHECKPOINT_CLASSES: DeepSpeed's own loader unpickles anything (weights_only=False), so a
    checkpoint on shared storage that someone replaced could run code in every worker."""
    import importlib

    allowed = [getattr(importlib.import_module(module), name)
               for module, _, name in (c.rpartition(".") for c in DEEPSPEED_CHECKPOINT_CLASSES)]

    def load(path: str, map_location=None):
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location=map_location, weights_only=True)
    engine.checkpoint_engine.load = load


def resume(engines: dict) -> tuple[list[dict], object, dict]:
    """(history so far, the final checkpoint if the run had finished, the loop's saved state) from Ray
    Train's latest checkpoint, loading each engine from its folder."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return [], None, {}
    with checkpoint.as_directory() as folder:
        folder = Path(folder)
        state = json.loads((folder / STATE_FILE).read_text())
        history = read_history(folder)
        if state["final"]:
            keep = Path(tempfile.mkdtemp(prefix="rayalign-final-"))
            shutil.copytree(folder, keep, dirs_exist_ok=True)
            return history, ray.train.Checkpoint.from_directory(str(keep)), state.get("extra", {})
        for name, engine in engines.items():
            read_checkpoints_as_data(engine)
            engine.load_checkpoint(str(folder / name), tag=DEEPSPEED_TAG)
    print(f"rayalign: resumed training from step {len(history)}", flush=True)
    return history, None, state.get("extra", {})


def _save_hf(engine, tokenizer, out: Path, rank: int, zero_stage: int) -> None:
    """Full HF checkpoint from rank 0; under ZeRO-3 every rank joins the parameter gather."""
    import deepspeed

    gather = (deepspeed.zero.GatheredParameters(list(engine.module.parameters()), modifier_rank=None)
              if zero_stage == 3 else nullcontext())
    with gather:
        if rank == 0:
            state = {k: v.detach().cpu().clone() for k, v in engine.module.state_dict().items()}
            engine.module.save_pretrained(out, state_dict=state)
            tokenizer.save_pretrained(out)
