"""ppo: the online RLHF baseline in place of the offline sample → ... → train path: vLLM rollouts
from the current policy, rewards from score.*, a critic, the KL to the reference, clipped updates,
new weights into vLLM every step (rayalign.training.ppo) — one Ray Train job."""

from __future__ import annotations

import time
from pathlib import Path

import ray

from rayalign.actors.rewards import scorer_for
from rayalign.actors.sampler import sampler_kwargs
from rayalign.config import settings
from rayalign.data.parquet import read_table
from rayalign.data.prompts import split_prompts
from rayalign.pipeline.context import RunContext
from rayalign.pipeline.resources import train_bundles
from rayalign.pipeline.stage import Stage
from rayalign.pipeline.stage_tools import fit_node, training_run
from rayalign.pipeline.stages import prompts, reference, reward_model
from rayalign.plots import reward_vs_kl, save
from rayalign.training.loop import read_history
from rayalign.training.trainer import throughput

PLOT = "reward_vs_kl.png"


def run(ctx: RunContext, out: Path) -> dict[str, float]:
    from rayalign.training.ppo import train_loop

    cfg, policy, scorer = ctx.cfg, ctx.latest_policy(), reward_model.scoring_model(ctx)
    trust = cfg.model.trust_remote_code
    train = split_prompts(read_table(ctx.path(prompts.STAGE)), "train")
    loop_config = {
        "model_path": policy, "reference_path": reference.initial_reference(ctx),
        # The critic starts from the reward model when one scores, else from the policy.
        "critic_path": scorer or policy,
        "scorer": scorer_for(cfg.score, scorer, trust),  # the score stage's reward actor class and its kwargs
        "sampler": sampler_kwargs(policy, cfg.sample, cfg.model.dtype, n=cfg.ppo.responses_per_prompt,
                                  seed=cfg.ppo.seed, stream="ppo", temperature=cfg.sample.temperature,
                                  top_p=cfg.sample.top_p, trust_remote_code=trust),
    }
    start = time.perf_counter()
    history = fit_node(ctx, train_loop, loop_config, cfg.ppo, ray.data.from_arrow(train), out, steps=cfg.ppo.steps)
    seconds, last = time.perf_counter() - start, history[-1]
    save(reward_vs_kl(history), out / PLOT)
    return {"rows": train.num_rows, "seconds": seconds, "final_reward_mean": last["reward_mean"],
            "final_kl": last["kl"], "weight_sync_s": sum(h["weight_sync_s"] for h in history) / len(history),
            **throughput(history, seconds)}


def track(ctx: RunContext, folder: Path) -> None:
    consumed = {"policy": ctx.latest_policy(), "reference": reference.initial_reference(ctx)}
    if reward_model.scoring_model(ctx):
        consumed["reward_model"] = reward_model.scoring_model(ctx)
    training_run(ctx, folder, ctx.cfg.ppo.model_dump(mode="json"), consumed, ctx.path(prompts.STAGE), "prompts",
                 aligned=True)
    ctx.tracker.log_figure(reward_vs_kl(read_history(folder)), f"ppo/{PLOT}")


STAGE = Stage(
    name="ppo",
    run=run,
    reads=(prompts.STAGE, reward_model.STAGE),
    settings=lambda cfg: [settings(cfg.ppo), settings(cfg.sample), settings(cfg.score), cfg.model.policy,
                          cfg.model.reference, cfg.model.dtype],
    active=lambda cfg: cfg.ppo.enabled,
    needs=lambda cfg: train_bundles(cfg.ppo.resources),
    needs_set_by="ppo.resources.num_workers / use_gpu / cpus_per_worker",
    track=track,
    summary=lambda folder, metrics: {"aligned_model": str(folder / "model")},
    produces_policy=True,
    starts_from_policy=True,
)
