"""The stages before RS-DPO proper: SFT, synthetic preference labels, reward-model training.

sft          demonstrations → causal-LM fine-tuning of model.policy (loss on response tokens)
label_sample the (SFT) policy samples label.k responses for every prompt, both splits
label        a gold reward labels random pairs of them under Bradley-Terry noise
reward_model Bradley-Terry training of a score head on the policy, checked on held-out pairs
"""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from rayalign.context import RunContext, StageError
from rayalign.data.labels import gold_agreement, label_group
from rayalign.data.preferences import read_preferences
from rayalign.data.prompts import build_prompts_table
from rayalign.data.ray_io import map_with_actors, read_stage, to_table
from rayalign.data.sft_data import build_sft_table
from rayalign.data.store import read_table
from rayalign.evaluation.metrics import mean
from rayalign.rewards import GOLD_REWARDS, RewardModelScorer
from rayalign.stages import timed_write, sample_prompts, training_run
from rayalign.training.reward_model import distinct_index, prompt_grouped_order
from rayalign.training.sft import length_bucketed_order
from rayalign.training.trainer import fit, shuffled, throughput


def _tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def run_sft(ctx: RunContext, out: Path) -> dict[str, float]:
    from rayalign.training.sft import train_loop

    cfg = ctx.cfg.sft
    table, dropped = build_sft_table(cfg, ctx.cfg.data, _tokenizer(ctx.base_policy))
    lengths = table["num_tokens"].to_pylist()
    # Buckets of one are a plain shuffle.
    table = table.take(length_bucketed_order(lengths, cfg.micro_batch_size if cfg.length_bucketing else 1, cfg.seed))
    pq.write_table(table, out / "sft_data.parquet")  # the examples in training order
    start = time.perf_counter()
    history = fit(train_loop, {"model_path": ctx.base_policy}, cfg, ray.data.from_arrow(table),
                  ctx.train_name("sft"), ctx.run_dir, out)
    seconds = time.perf_counter() - start
    return {"rows": table.num_rows, "seconds": seconds, "dropped_examples": dropped,
            "first_loss": history[0]["loss"], "final_loss": history[-1]["loss"],
            "padding_fraction": mean([h["padding_fraction"] for h in history]), **throughput(history, seconds)}


def label_prompts(ctx: RunContext) -> pa.Table:
    """The prompts whose samples are labelled: the run's, or as many of data.prompts as the
    label.max_*_prompts caps allow (same train/held-out split)."""
    cfg = ctx.cfg.label
    caps = {k: v for k, v in {"max_train_prompts": cfg.max_train_prompts,
                              "max_heldout_prompts": cfg.max_heldout_prompts}.items() if v is not None}
    if not caps:
        return read_table(ctx.store.path("prompts"))
    return build_prompts_table(ctx.cfg.data.model_copy(update=caps), _tokenizer(ctx.base_policy))


def run_label_sample(ctx: RunContext, out: Path) -> dict[str, float]:
    prompts = label_prompts(ctx).select(["prompt_id", "prompt"])
    return sample_prompts(ctx, prompts, out, ctx.cfg.label.k, ctx.cfg.label.seed, "label_sample")


def run_label(ctx: RunContext, out: Path) -> dict[str, float]:
    cfg = ctx.cfg.label
    prompts = label_prompts(ctx)
    splits = dict(zip(prompts["prompt_id"].to_pylist(), prompts["split"].to_pylist()))
    scored = map_with_actors(read_stage(ctx.store.path("label_sample")), GOLD_REWARDS[cfg.gold_reward], {},
                             ctx.cfg.score.resources)
    ds = scored.groupby("prompt_id").map_groups(label_group, fn_kwargs={"cfg": cfg, "splits": splits},
                                                batch_format="pyarrow")
    rows, seconds = timed_write(ds, out)
    if rows == 0:
        raise StageError("label produced no pairs: every prompt's samples were identical; raise label.k or "
                         "sample.temperature")
    table = read_table(out)
    gaps = pc.subtract(table["chosen_gold"], table["rejected_gold"])
    train = pc.sum(pc.equal(table["split"], "train")).as_py()
    return {"rows": rows, "seconds": seconds, "train_pairs": train, "heldout_pairs": rows - train,
            # Share of labels that contradict the gold reward: the Bradley-Terry noise actually drawn.
            "flipped_fraction": pc.mean(pc.less(gaps, 0).cast(pa.float64())).as_py(),
            "mean_abs_gold_gap": pc.mean(pc.abs(gaps)).as_py()}


def _preferences(ctx: RunContext) -> pa.Table:
    cfg = ctx.cfg.reward_model
    if cfg.data == "label":
        return read_table(ctx.store.path("label"))
    return read_preferences(cfg.data, ctx.cfg.data, cfg.heldout_fraction, _tokenizer(ctx.policy_path))


def score_pairs(pairs: pa.Table, model_path: str, ctx: RunContext) -> tuple[list[float], list[float]]:
    """Reward-model scores of every pair's chosen and rejected response (each distinct one scored once),
    in an actor pool."""
    n = pairs.num_rows
    prompts = pairs["prompt"].to_pylist() * 2
    distinct, index = distinct_index(list(zip(prompts, pairs["chosen"].to_pylist() + pairs["rejected"].to_pylist())))
    rows = pa.table({"row": list(range(len(distinct))), "prompt": [p for p, _ in distinct],
                     "response": [r for _, r in distinct]})
    ds = map_with_actors(ray.data.from_arrow(rows), RewardModelScorer, {"model_path": model_path},
                         ctx.cfg.score.resources)
    scored = to_table(ds).sort_by("row")["reward"].to_pylist()
    scores = [scored[i] for i in index]
    return scores[:n], scores[n:]


def run_reward_model(ctx: RunContext, out: Path) -> dict[str, float]:
    from rayalign.training.reward_model import train_loop

    cfg = ctx.cfg.reward_model
    pairs = _preferences(ctx)
    train = pairs.filter(pc.equal(pairs["split"], "train"))
    heldout = pairs.filter(pc.equal(pairs["split"], "heldout"))
    start = time.perf_counter()
    train = train.select(["prompt", "chosen", "rejected"])
    if cfg.group_by_prompt:
        data = ray.data.from_arrow(train.take(prompt_grouped_order(train["prompt"].to_pylist(), cfg.seed)))
    else:
        data = shuffled(train, cfg.seed)
    history = fit(train_loop, {"model_path": ctx.reward_model_backbone}, cfg, data, ctx.train_name("reward_model"), ctx.run_dir, out)
    seconds = time.perf_counter() - start
    chosen, rejected = score_pairs(heldout, str(out / "model"), ctx)
    heldout = heldout.append_column("chosen_score", pa.array(chosen, pa.float64())).append_column(
        "rejected_score", pa.array(rejected, pa.float64()))
    pq.write_table(heldout, out / "heldout_scores.parquet")
    metrics = {"rows": train.num_rows, "seconds": seconds, "train_pairs": train.num_rows,
               "heldout_pairs": heldout.num_rows, "final_loss": history[-1]["loss"],
               "final_accuracy": history[-1]["accuracy"],
               # Agreement with the labels the model was trained to predict (noisy, for synthetic labels).
               "heldout_accuracy": mean([float(c > r) for c, r in zip(chosen, rejected)]),
               **throughput(history, seconds)}
    if "chosen_gold" in heldout.column_names:
        metrics["rm_gold_agreement"] = gold_agreement(chosen, rejected, heldout["chosen_gold"].to_pylist(),
                                                      heldout["rejected_gold"].to_pylist())
    return metrics


def track_sft(ctx: RunContext, folder: Path) -> None:
    training_run(ctx, "sft", folder, {"policy": ctx.base_policy}, "sft", "demonstrations")


def track_reward_model(ctx: RunContext, folder: Path) -> None:
    data, backbone = ctx.cfg.reward_model.data, ctx.reward_model_backbone
    if data == "label":
        training_run(ctx, "reward_model", folder, {"backbone": backbone}, "label", "preferences")
    else:
        training_run(ctx, "reward_model", folder, {"backbone": backbone, "data": data}, None, "preferences")
    ctx.tracker.set_tag("rayalign.reward_model", str(folder / "model"))


def track_label(ctx: RunContext, folder: Path) -> None:
    ctx.tracker.log_dataset(read_table(folder), "labelled_pairs", folder, context="reward_model")


RUNNERS = {"sft": run_sft, "label_sample": run_label_sample, "label": run_label, "reward_model": run_reward_model}
TRACKERS = {"sft": track_sft, "label": track_label, "reward_model": track_reward_model}
