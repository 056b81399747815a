"""The PPO worker loop (InstructGPT-style, rayalign.losses.ppo for the maths), run by Ray Train.

Each worker holds the policy and the critic (DeepSpeed engines, ZeRO 0-3), the frozen reference
model, the reward scorer and an in-process vLLM engine. Each step: every worker's engine samples
responses for its share of the step's prompts from the step's own random stream; the policy,
reference and critic score them in one forward pass each (old log-probs come from the trainer,
not from vLLM); rewards are the score at the last response token minus the per-token KL
penalty; GAE advantages are whitened over the whole rollout; ppo_epochs of clipped updates run
over shuffled mini-batches (DeepSpeed averages the gradients over the workers); the new weights
go into every worker's vLLM engine (gathered a bucket at a time under ZeRO-3). Step metrics go
live to the pipeline's MLflow run.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import torch

from rayalign.config import PPOConfig
from rayalign.logprobs import pad_batch, token_logprobs
from rayalign.losses.ppo import (AdaptiveKLController, AllReduce, gae, kl_penalized_rewards, masked_mean, masked_whiten,
                                 ppo_policy_loss, ppo_value_loss)
from rayalign.pretrained import load_model, load_tokenizer
from rayalign.training.loop import (CheckpointClock, deepspeed_engine, grad_norm, report_final, report_resumable,
                                    resume, setup_worker, step_logger, without_dropout)


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                       all_reduce: AllReduce | None = None) -> float:
    """1 − Var(R − V)/Var(R) over masked tokens (of every worker, with `all_reduce`): how much of the
    returns the critic predicts."""
    var = masked_mean((returns - masked_mean(returns, mask, all_reduce)) ** 2, mask, all_reduce)
    err = returns - values
    unexplained = masked_mean((err - masked_mean(err, mask, all_reduce)) ** 2, mask, all_reduce)
    return float(1.0 - unexplained / var.clamp(min=1e-12))


def full_state_dict(module: torch.nn.Module, zero_stage: int, bucket_bytes: int = 256 * 2**20) -> dict:
    """The module's whole state dict, tied names included. Under ZeRO-3 each worker holds a shard of
    every parameter: they are gathered (a collective, every worker calls this) a bucket of about
    `bucket_bytes` at a time, so the gather never holds more than one bucket beyond the copy."""
    state = module.state_dict(keep_vars=True)
    if zero_stage != 3:
        return {name: tensor.detach() for name, tensor in state.items()}
    import deepspeed

    names: dict[int, tuple[torch.Tensor, list[str]]] = {}  # tied parameters: one tensor, several names
    for name, tensor in state.items():
        names.setdefault(id(tensor), (tensor, []))[1].append(name)
    out, bucket, size = {}, [], 0
    entries = list(names.values())
    for i, (tensor, tensor_names) in enumerate(entries):
        bucket.append((tensor, tensor_names))
        size += getattr(tensor, "ds_numel", tensor.numel()) * tensor.element_size()
        if size >= bucket_bytes or i == len(entries) - 1:
            params = [t for t, _ in bucket if hasattr(t, "ds_id")]
            with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
                for t, tied in bucket:
                    copy = t.detach().clone()
                    out.update({n: copy for n in tied})
            bucket, size = [], 0
    return out


def load_critic(path: str, trust_remote_code: bool = False) -> torch.nn.Module:
    """The critic: a one-output token head on the backbone at `path`. From a reward model (a
    sequence classifier), the head starts as the reward model's score layer — transformers names
    both heads `score` — so the first values are the reward model's per-prefix scores; from a
    causal LM the head is new."""
    from transformers import AutoModelForTokenClassification

    return load_model(AutoModelForTokenClassification, path, trust_remote_code, num_labels=1, dtype=torch.float32)


def _sum_over_workers(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    torch.distributed.all_reduce(x)
    return x


def _gathered(values: list[float], world: int) -> list[float]:
    """Every worker's `values`, concatenated in rank order."""
    if world == 1:
        return values
    parts = [None] * world
    torch.distributed.all_gather_object(parts, values)
    return [v for part in parts for v in part]


def sync_weights(sampler, weights: dict[str, torch.Tensor], mode: str, scratch: Path) -> None:
    """Put a policy's state dict into the vLLM engine: in memory, or (mode 'checkpoint') through a
    safetensors file in `scratch`. Tied tensors are written as copies: vLLM's reload keeps lm_head
    apart from the embedding and needs both."""
    if mode == "memory":
        sampler.load_weights(weights.items())
        return
    from safetensors.torch import save_file

    tensors, seen = {}, set()
    for name, tensor in weights.items():
        tensor = tensor.detach().contiguous()
        tensors[name] = tensor.clone() if tensor.data_ptr() in seen else tensor
        seen.add(tensor.data_ptr())
    save_file(tensors, str(scratch / "model.safetensors"))
    sampler.load_checkpoint(str(scratch))


def step_prompts(prompts: list[dict], step: int, n: int, seed: int) -> list[dict]:
    """The prompts of PPO step `step`: a seeded shuffle of the training prompts, cycled n at a time."""
    order = random.Random(seed).sample(range(len(prompts)), len(prompts))
    return [prompts[order[(step * n + i) % len(prompts)]] for i in range(n)]


def train_loop(loop_config: dict) -> None:
    """Ray Train worker entry point of the ppo stage."""
    import ray.train
    from transformers import AutoModelForCausalLM

    from rayalign.actors.sampler import VLLMSampler

    cfg = PPOConfig.model_validate(loop_config["trainer"])
    rank, world, device = setup_worker(loop_config, cfg)
    all_reduce = _sum_over_workers if world > 1 else None
    trust = loop_config["trust_remote_code"]
    tokenizer = load_tokenizer(loop_config["model_path"], trust)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    policy = deepspeed_engine(without_dropout(load_model(AutoModelForCausalLM, loop_config["model_path"], trust,
                                                         dtype=torch.float32)), cfg, world)
    critic = deepspeed_engine(without_dropout(load_critic(loop_config["critic_path"], trust)),
                              cfg.model_copy(update={"learning_rate": cfg.critic_learning_rate}), world)
    reference = load_model(AutoModelForCausalLM, loop_config["reference_path"], trust, dtype=torch.float32).to(device)
    reference.eval().requires_grad_(False)
    scorer_class, scorer_kwargs = loop_config["scorer"]
    scorer = scorer_class(**scorer_kwargs)  # the score stage's reward actor, called in process
    sampler = VLLMSampler(**loop_config["sampler"])
    kl_ctl = AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon)
    training_prompts = list(ray.train.get_dataset_shard("train").iter_rows())
    rng = random.Random(cfg.seed)
    engines = {"policy": policy, "critic": critic}
    history, final, saved = resume(engines)
    if final is not None:  # the run had finished; only its final report was lost
        ray.train.report({**history[-1], "final": 1}, checkpoint=final if rank == 0 else None)
        return
    log = step_logger(loop_config, rank, done=len(history))
    scratch = Path(tempfile.mkdtemp(prefix="rayalign-ppo-sync-"))  # weight_sync=checkpoint writes here
    if history:  # resumed: the KL coefficient, the mini-batch shuffles and vLLM's weights as they were
        kl_ctl.value = saved["kl_coef"]
        rng.setstate((saved["rng"][0], tuple(saved["rng"][1]), saved["rng"][2]))
        sync_weights(sampler, full_state_dict(policy.module, cfg.zero_stage), cfg.weight_sync, scratch)
    checkpoint = CheckpointClock(cfg, world, device)
    for step in range(len(history), cfg.steps):
        started = time.perf_counter()
        # Every worker samples and trains on its share of the step's prompts.
        prompts = step_prompts(training_prompts, step, cfg.prompts_per_step, cfg.seed)[rank::world]
        sampler.stream = f"ppo.step{step}"  # each step draws from a stream of its own
        rollout = sampler(pa.Table.from_pylist([{"prompt_id": p["prompt_id"], "prompt": p["prompt"]} for p in prompts]))
        rollout_s = time.perf_counter() - started
        scores = torch.tensor(scorer(rollout)["reward"].to_pylist(), dtype=torch.float32, device=device)
        ids, attention, response = (t.to(device) for t in pad_batch(rollout["prompt_token_ids"].to_pylist(),
                                                                    rollout["response_token_ids"].to_pylist(), pad_id))
        mask = response[:, 1:].float()  # position j holds the log-prob of token j + 1
        with torch.no_grad():
            old_logprobs, entropy = token_logprobs(policy, ids, attention, with_entropy=True)
            old_logprobs = old_logprobs * mask
            ref_logprobs = token_logprobs(reference, ids, attention) * mask
            old_values = critic(input_ids=ids, attention_mask=attention).logits[:, :-1, 0].float() * mask
            kl = ((old_logprobs - ref_logprobs) * mask).sum(-1)
            rewards = kl_penalized_rewards(scores, old_logprobs, ref_logprobs, mask, kl_ctl.value)
            advantages, returns = gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
            advantages = masked_whiten(advantages, mask, all_reduce=all_reduce)  # over the whole rollout
        trained = time.perf_counter()
        updates = []
        for _ in range(cfg.ppo_epochs):
            order = rng.sample(range(ids.shape[0]), ids.shape[0])
            for start in range(0, len(order), cfg.micro_batch_size):
                rows = torch.tensor(order[start:start + cfg.micro_batch_size], device=device)
                m = mask[rows]
                logprobs = token_logprobs(policy, ids[rows], attention[rows])
                policy_loss, clipped = ppo_policy_loss(logprobs, old_logprobs[rows], advantages[rows], m, cfg.clip)
                policy.backward(policy_loss, scale_wrt_gas=False)
                policy.step()
                policy_grad_norm = grad_norm(policy)
                values = critic(input_ids=ids[rows], attention_mask=attention[rows]).logits[:, :-1, 0].float()
                value_loss = ppo_value_loss(values, old_values[rows], returns[rows], m, cfg.value_clip)
                critic.backward(value_loss, scale_wrt_gas=False)
                critic.step()
                with torch.no_grad():
                    approx_kl = float(masked_mean(0.5 * (logprobs - old_logprobs[rows]) ** 2, m))
                updates.append([policy_loss.item(), value_loss.item(), clipped.item(), approx_kl,
                                policy_grad_norm if policy_grad_norm is not None else float("nan")])
        train_s = time.perf_counter() - trained
        synced = time.perf_counter()
        sync_weights(sampler, full_state_dict(policy.module, cfg.zero_stage), cfg.weight_sync, scratch)
        sync_s = time.perf_counter() - synced
        # Step statistics over every worker's rollout; times are rank 0's.
        all_scores = torch.tensor(_gathered(scores.tolist(), world))
        lengths = _gathered(mask.sum(-1).tolist(), world)
        losses = torch.tensor(updates).mean(0)
        if all_reduce is not None:
            losses = all_reduce(losses) / world
        tokens = sum(lengths)
        stats = {
            "reward_mean": float(all_scores.mean()),
            "reward_std": float(all_scores.std()) if len(all_scores) > 1 else 0.0,
            "kl": float(torch.tensor(_gathered(kl.tolist(), world)).mean()), "kl_coef": kl_ctl.value,
            **dict(zip(("policy_loss", "value_loss", "clip_fraction", "approx_kl", "grad_norm"), losses.tolist())),
            "entropy": float(masked_mean(entropy, mask, all_reduce)),
            "explained_variance": explained_variance(old_values, returns, mask, all_reduce),
            "rollouts": len(lengths), "response_length": tokens / len(lengths),
            "rollout_tokens_per_s": tokens / max(rollout_s, 1e-9),
            "train_tokens_per_s": tokens * cfg.ppo_epochs / max(train_s, 1e-9), "weight_sync_s": sync_s,
            "learning_rate": float(policy.get_lr()[0]), "tokens": tokens,
            "tokens_per_s": tokens / max(time.perf_counter() - started, 1e-9),
        }
        kl_ctl.update(stats["kl"], n_steps=len(lengths))
        history.append({"step": step + 1, "epoch": 0, **stats})
        log(stats, step + 1)
        if checkpoint.due(len(history)):
            state = rng.getstate()
            report_resumable(engines, history, rank,
                             extra={"kl_coef": kl_ctl.value, "rng": [state[0], list(state[1]), state[2]]})
    shutil.rmtree(scratch, ignore_errors=True)
    critic.destroy()
    report_final(policy, tokenizer, history, rank, cfg.zero_stage)
    policy.destroy()
