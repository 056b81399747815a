"""The schema of every config section: typed fields with validation and their documentation.

Every option is documented once, here, in its field description; `rayalign presets`
and the README point to this module.
"""

from __future__ import annotations

import warnings
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rayalign.config.hashing import RUN_ONLY, flatten
from rayalign.redaction import REDACTED


class Section(BaseModel):
    # forbid: a typo in a key must fail loudly, not be silently ignored.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ActorResources(Section):
    """Resources of one Ray Data actor pool; not part of a stage's cache key."""

    min_actors: int = Field(1, ge=1, description="Smallest size of the autoscaling actor pool.")
    max_actors: int = Field(1, ge=1, description="Largest size of the autoscaling actor pool.")
    num_cpus: float = Field(1, ge=0, description="CPUs Ray reserves per actor.")
    num_gpus: float = Field(0, ge=0, description="GPUs per actor; fractions pack several actors on a GPU.")
    torch_threads: int | None = Field(
        None, ge=1, description="Threads torch/vLLM use inside an actor; default: Ray's, one per reserved CPU."
    )
    batch_size: int = Field(16, ge=1, description="Rows handed to an actor per call.")
    max_restarts: int = Field(
        3, ge=-1, description="Times Ray restarts an actor of the pool whose process died (killed, out of memory, "
        "its node lost) before the stage fails; -1 = unlimited. A bounded number ends a run whose actors die "
        "at every start instead of restarting them forever."
    )
    max_task_retries: int = Field(
        3, ge=-1, description="Times a batch whose actor died is retried on a restarted or another actor; -1 = "
        "unlimited. Each batch's rows reach the output once."
    )

    @model_validator(mode="after")
    def _pool_bounds(self) -> ActorResources:
        if self.min_actors > self.max_actors:
            raise ValueError(f"min_actors ({self.min_actors}) > max_actors ({self.max_actors})")
        return self


class ModelConfig(Section):
    policy: str = Field(
        "smollm2-135m-instruct",
        description="Policy to align: a built-in model name (see rayalign.models) or an HF checkpoint directory.",
    )
    reference: str | None = Field(
        None, description="Reference model π_ref of training and of the evaluation KL; default: the policy that "
        "samples (the SFT model when sft runs)."
    )
    dtype: Literal["float32", "bfloat16"] = Field("float32", description="Weights dtype for sampling and scoring.")
    trust_remote_code: bool = Field(
        False, description="Let transformers and vLLM import and run the Python code a checkpoint ships (the "
        "modules its auto_map names), for every model the run loads. That code runs with your rights on every "
        "node: enable it only for checkpoints whose code you have read. Warned about when on."
    )

    @model_validator(mode="after")
    def _warn_remote_code(self) -> ModelConfig:
        if self.trust_remote_code:
            warnings.warn("model.trust_remote_code=true: Python code inside the run's checkpoints will be imported "
                          "and run on every node; set it only for checkpoints whose code you have read",
                          UserWarning, stacklevel=2)
        return self


class DataConfig(Section):
    prompts: str = Field(
        "builtin:movie_reviews",
        description="Prompt set (docs/data.md): 'builtin:NAME' (rayalign/assets/prompts); a .jsonl, .json or "
        ".parquet file, a directory or glob of them, or a datasets save_to_disk folder; or an s3://, gs:// or "
        "file:// URI. Rows: a prompt (text or a list of {role, content} messages), optionally a prompt_id.",
    )
    instruction: str = Field(
        "{prompt}",
        description="User message built from each text prompt ('{prompt}' is replaced); conversations are used "
        "as given. The default uses a prompt as it is; the presets on builtin:movie_reviews set the task's "
        "instruction, so override it to '{prompt}' when giving them prompts of your own.",
    )
    chat_template: bool = Field(
        True, description="Wrap each prompt in the policy's chat template when its tokenizer has one (a "
        "conversation needs one); false: text prompts go to the model as they are."
    )
    heldout_fraction: float = Field(0.2, gt=0, lt=1, description="Share of prompts held out for evaluation.")
    max_train_prompts: int | None = Field(None, ge=1, description="Use at most this many training prompts.")
    max_heldout_prompts: int | None = Field(None, ge=1, description="Use at most this many held-out prompts.")
    seed: int = Field(0, description="Seed of the train/held-out split.")


class SampleConfig(Section):
    k: int = Field(8, ge=1, description="Responses sampled per prompt.")
    temperature: float = Field(1.0, ge=0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    max_tokens: int = Field(48, ge=1, description="Most new tokens per response.")
    seed: int = Field(0, description="Base seed; each prompt gets its own seed derived from it and its id.")
    max_model_len: int = Field(512, ge=16, description="vLLM context length (prompt + response).")
    kv_cache_gib: int = Field(1, ge=1, description="vLLM CPU KV-cache size in whole GiB (VLLM_CPU_KVCACHE_SPACE); "
                              "one sequence of max_model_len tokens must fit (checked as a run starts).")
    gpu_memory_utilization: float = Field(0.3, gt=0, le=1, description="vLLM share of GPU memory per actor.")
    enforce_eager: bool = Field(
        True, description="Skip vLLM's graph capture/compilation: faster start, slower steady state on GPUs."
    )
    resources: ActorResources = Field(default_factory=lambda: ActorResources(batch_size=64))


class ReferenceConfig(Section):
    reuse_sampler_logprobs: bool = Field(
        False,
        description="Take log π_ref from the sampler's log-probs instead of a forward pass; only valid when "
        "the sampler is the reference model at temperature 1 and top_p 1. Rounds after the first with "
        "rounds_reference=initial sample from another policy than the reference: they use the forward pass.",
    )
    resources: ActorResources = Field(default_factory=lambda: ActorResources(batch_size=16))


class ScoreConfig(Section):
    reward: Literal["vader", "reward_model"] = Field(
        "vader", description="'vader': VADER compound sentiment in [-1, 1]; 'reward_model': an HF checkpoint."
    )
    reward_model_path: str | None = Field(
        None, description="HF sequence-classification checkpoint, for reward: reward_model; default: the "
        "reward_model stage's (reward_model.enabled)."
    )
    resources: ActorResources = Field(default_factory=lambda: ActorResources(batch_size=64))


class SelectConfig(Section):
    strategy: Literal["rs_dpo", "best_vs_worst", "rso", "pairwise_ranking", "random_pair"] = Field(
        "rs_dpo", description="Pair-construction rule (docs/methods.md)."
    )
    tau: float = Field(
        0.25,
        gt=0,
        description="RS-DPO temperature τ: pairs need r_j − r_l > τ·logit(η). The paper's τ = 1 suits a reward "
        "model's logit scale; VADER's [-1, 1] needs about 0.25 (gap > 0.43 at η = 0.85).",
    )
    eta: float = Field(0.85, gt=0, lt=1, description="RS-DPO threshold η on σ((r_j − r_l)/τ) (paper: 0.85).")
    max_pairs_per_prompt: int | None = Field(
        None, ge=1, description="Keep at most this many pairs per prompt, largest reward gap first."
    )
    rso_num_samples: int | None = Field(
        None, ge=2, description="RSO: samples accepted per prompt; default max(2, k // 4) of the prompt's k scored "
        "candidates (counted before the perplexity filter), so RSO rejects about 3/4 (paper: n = 8 of N = 64). "
        "n >= sample.k accepts every candidate, which is warned about.",
    )
    rso_beta: float = Field(0.5, gt=0, description="RSO: β of the target π_sft·exp(r/β) (paper: 0.5).")
    rso_pairing: Literal["tournament", "first_round"] = Field(
        "tournament", description="RSO: pair accepted samples as a tournament (n − 1) or first round (n/2)."
    )
    judge: Literal["reward", "reward_model"] = Field(
        "reward", description="pairwise_ranking: the comparison, P(a ≻ b) = σ(r_a − r_b); 'reward' takes r from "
        "the score stage, 'reward_model' from select.judge_model_path (or the trained reward model)."
    )
    judge_model_path: str | None = Field(
        None, description="Reward-model checkpoint of the 'reward_model' judge; default: the reward_model stage's."
    )
    min_perplexity: float | None = Field(
        None, gt=0, description="Drop candidates whose perplexity under the sampling policy is below this."
    )
    max_perplexity: float | None = Field(
        None, gt=0, description="Drop candidates whose perplexity under the sampling policy is above this."
    )
    label_temperature: float = Field(
        0.1, ge=0, description="random_pair: Bradley-Terry temperature T of the annotator that orders the two "
        "random responses, P(a ≻ b) = σ((r_a − r_b)/T); 0 = always the higher reward."
    )
    seed: int = Field(0, description="Seed of RSO's random acceptance and of random_pair's draws (per prompt, "
                      "derived with its id).")

    @model_validator(mode="after")
    def _perplexity_range(self) -> SelectConfig:
        lo, hi = self.min_perplexity, self.max_perplexity
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"min_perplexity ({lo}) > max_perplexity ({hi})")
        return self

    def rso_samples_for(self, candidates: int) -> int:
        """RSO's n for a prompt with `candidates` scored samples: rso_num_samples, or max(2, candidates // 4)."""
        # k is small here (8, not the paper's 64), so a quarter rather than the paper's 1/8 keeps n >= 2.
        return self.rso_num_samples if self.rso_num_samples is not None else max(2, candidates // 4)


class TrainResources(Section):
    """Ray Train worker group; not part of the train stage's cache key."""

    num_workers: int = Field(1, ge=1, description="Ray Train workers (data-parallel ranks).")
    use_gpu: bool = Field(False, description="One GPU per worker.")
    cpus_per_worker: float = Field(1, ge=0, description="CPUs Ray reserves per worker.")
    torch_threads: int | None = Field(None, ge=1, description="Torch threads per worker; default: Ray's, one per CPU.")
    storage_path: str | None = Field(
        None, description="Ray Train storage for checkpoints (shared on multi-node clusters: a path on shared "
        "disk, s3:// or gs://); default: <run_dir>/ray_train."
    )
    max_failures: int = Field(
        1, ge=-1, description="Worker-group restarts Ray Train attempts after a worker dies, each resuming from the "
        "newest checkpoint (checkpoint_every_steps / checkpoint_every_minutes; from the start without one); "
        "-1 = unlimited."
    )


class TrainerConfig(Section):
    """Optimisation, checkpoints and workers shared by every training stage (sft, reward_model, train)."""

    learning_rate: float = Field(1e-5, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    adam_betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = Field(
        (0.9, 0.95), description="AdamW (β1, β2). 0.95 suits large batches; small, noisy batches (a reward model "
        "on one prompt's pairs) train better with 0.999."
    )
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps.")
    epochs: int = Field(1, ge=1, description="Passes over the training data.")
    micro_batch_size: int = Field(8, ge=1, description="Examples (pairs, for preference data) per worker per "
                                  "forward/backward.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    zero_stage: Literal[0, 1, 2, 3] = Field(0, description="DeepSpeed ZeRO stage.")
    bf16: bool = Field(False, description="Train in bf16 (DeepSpeed bf16 mode).")
    gradient_checkpointing: bool = Field(
        False, description="Recompute each layer's activations in the backward pass instead of keeping them "
        "(transformers' gradient checkpointing, non-reentrant): less memory, more compute; the same "
        "gradients.", json_schema_extra=RUN_ONLY,
    )
    seed: int = Field(0, description="Shuffle and init seed.")
    checkpoint_every_steps: int = Field(
        0, ge=0, description="Save a resumable DeepSpeed checkpoint every N optimizer steps (0: by time only). A "
        "restarted worker group, or a killed stage rerun, continues from the newest one."
    )
    checkpoint_every_minutes: float = Field(
        15, ge=0, description="Also save a resumable checkpoint after the first step that ends this many minutes "
        "after the last one (0: by steps only), so that a long stage loses at most that much work.",
        json_schema_extra=RUN_ONLY,
    )
    keep_checkpoints: int = Field(2, ge=1, description="Resumable checkpoints kept (the newest N).")
    resources: TrainResources = Field(default_factory=TrainResources)


class TrainConfig(TrainerConfig):
    loss: Literal["dpo", "ipo", "slic", "hinge_norm"] = Field("dpo", description="Preference loss (docs/methods.md).")
    beta: float = Field(0.1, gt=0, description="DPO and IPO β.")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="Conservative-DPO label smoothing ε.")
    ipo_token_mean: bool = Field(False, description="IPO on per-token mean log-probs instead of sums.")
    slic_delta: float = Field(1.0, gt=0, description="SLiC margin δ.")
    slic_lambda: float = Field(0.1, ge=0, description="SLiC weight λ of the chosen response's NLL.")
    hinge_gamma: float = Field(0.05, gt=0, description="RSO hinge-norm γ (paper: 0.05).")
    budget_lambda: float = Field(
        0.0, ge=0, description="Weight λ of the budget regulariser λ·max(0, log π_ref(y_w) − log π(y_w) − b); 0 = off."
    )
    budget: float = Field(
        0.0, ge=0, description="Budget b (nats) the chosen log-likelihood may fall below the reference."
    )
    share_prompt: bool = Field(
        True, description="Run each pair's prompt once: prompt, chosen and rejected in one sequence, the rejected "
        "response masked from the chosen (the same log-probs as two sequences, up to float rounding; a third fewer "
        "positions on the default task). false: chosen and rejected as two padded sequences, as TRL does; needed "
        "for attention kernels that take no 4D mask (flash attention).", json_schema_extra=RUN_ONLY,
    )


class TextTrainerConfig(TrainerConfig):
    """A training stage that tokenizes text itself (sft, reward_model)."""

    max_seq_len: int = Field(256, ge=2, description="Longer prompt+response sequences are cut to this many tokens.")


class SFTConfig(TextTrainerConfig):
    """Supervised fine-tuning of model.policy before sampling; its model becomes the policy and reference."""

    enabled: bool = Field(False, description="Run the sft stage.")
    data: str = Field(
        "builtin:movie_reviews",
        description="Demonstrations, from the sources of data.prompts ('builtin:NAME': rayalign/assets/sft): rows "
        "of prompt and completion (or response), of messages (the final assistant message is learned) or of "
        "text (all of it learned); docs/data.md. Prompts are rendered as data.prompts' are.",
    )
    length_bucketing: bool = Field(
        True, description="Batch examples of similar length together so padding does not dominate."
    )


class LabelConfig(Section):
    """Synthetic preference labels: a gold reward judges sampled pairs under Bradley-Terry noise."""

    k: int = Field(4, ge=2, description="Responses sampled per prompt (train and held-out prompts) to label.")
    pairs_per_prompt: int = Field(4, ge=1, description="Random distinct pairs labelled per prompt.")
    gold_reward: Literal["vader"] = Field("vader", description="Reward that stands in for the human annotator.")
    temperature: float = Field(
        0.1, ge=0, description="Bradley-Terry noise: P(a preferred) = σ((g_a − g_b)/temperature); 0 = noiseless."
    )
    seed: int = Field(0, description="Seed of pair choice and label draws, and of the label sampling.")
    max_train_prompts: int | None = Field(
        None, ge=1, description="Training prompts of data.prompts whose samples are labelled; default: the run's "
        "(data.max_train_prompts). A reward model needs more pairs than rejection sampling needs prompts."
    )
    max_heldout_prompts: int | None = Field(
        None, ge=1, description="Held-out prompts whose labelled pairs check the reward model; default: the run's."
    )


class RewardModelConfig(TextTrainerConfig):
    """Bradley-Terry reward-model training; its checkpoint is what the score stage uses."""

    enabled: bool = Field(False, description="Run the reward_model stage (and label stages when data is 'label').")
    data: str = Field(
        "label",
        description="'label': pairs from the label stage; or preferences from the sources of data.prompts: rows of "
        "prompt, chosen, rejected, or of chosen and rejected sharing their prompt (text or messages; docs/data.md), "
        "optionally with a split ('train'/'heldout'). Prompts are rendered as data.prompts' are.",
    )
    base_model: str | None = Field(
        None, description="Backbone checkpoint (built-in name or HF directory); default: the policy, after SFT "
        "when sft runs. A one-output score head is added on top."
    )
    heldout_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share of a preference file's pairs held out when it has no split column."
    )
    group_by_prompt: bool = Field(
        True, description="Keep a prompt's pairs in the same micro-batches and score each distinct response once "
        "(InstructGPT's K-choose-2 batching: K forward passes instead of 2 per pair); false shuffles pairs freely."
    )


class PPOConfig(TrainerConfig):
    """The PPO baseline (InstructGPT-style, docs/methods.md): vLLM rollouts from the current policy,
    rewards from score.*, a critic and the KL to the reference, several clipped updates per rollout,
    and the new weights loaded into vLLM after every step. Replaces the offline sample → reference →
    score → select → train path when enabled. micro_batch_size is the rows per update (mini-batch);
    epochs is not used (steps is)."""

    enabled: bool = Field(False, description="Run the ppo stage instead of the offline rejection-sampling path.")
    steps: int = Field(8, ge=1, description="PPO steps: a rollout, ppo_epochs of updates on it, a weight sync.")
    prompts_per_step: int = Field(16, ge=1, description="Training prompts per rollout (cycling through them).")
    responses_per_prompt: int = Field(1, ge=1, description="Responses sampled per prompt in a rollout.")
    ppo_epochs: int = Field(4, ge=1, description="Passes of updates over each rollout.")
    kl_coef: float = Field(0.05, ge=0, description="β_kl of the per-token KL penalty −β_kl·(log π − log π_ref).")
    kl_target: float | None = Field(
        None, gt=0, description="Target per-sequence KL of the adaptive controller (Ziegler et al.); None: fixed β_kl."
    )
    kl_horizon: int = Field(10000, ge=1, description="Horizon (in sequences) of the adaptive KL controller.")
    gamma: float = Field(1.0, ge=0, le=1, description="GAE discount γ.")
    lam: float = Field(0.95, ge=0, le=1, description="GAE λ.")
    clip: float = Field(0.2, gt=0, description="Policy ratio clip c: ρ is clipped to [1 − c, 1 + c].")
    value_clip: float = Field(0.2, gt=0, description="Value clip: V − V_old is clipped to [−c, c].")
    critic_learning_rate: float = Field(1e-5, gt=0, description="AdamW learning rate of the critic.")
    weight_sync: Literal["memory", "checkpoint"] = Field(
        "memory", description="How each step's weights reach vLLM: 'memory' hands the tensors to the engine's "
        "in-place reload; 'checkpoint' writes them as safetensors to a local scratch directory and reloads from "
        "it (the fallback where in-memory loading cannot work; its cost is the weight_sync_s metric)."
    )

    @model_validator(mode="after")
    def _prompts_split_evenly(self) -> PPOConfig:
        # Every worker must run the same number of updates, or DeepSpeed's gradient all-reduce hangs.
        if self.prompts_per_step % self.resources.num_workers:
            raise ValueError(f"ppo.prompts_per_step={self.prompts_per_step} does not split evenly over "
                             f"ppo.resources.num_workers={self.resources.num_workers}; make it a multiple")
        return self


class EvaluateConfig(Section):
    enabled: bool = Field(
        True, description="Evaluate the aligned policy against the SFT policy on the held-out prompts; false "
        "ends the run with training (a quick iteration on selection or training settings)."
    )
    samples_per_prompt: int = Field(2, ge=1, description="Responses per held-out prompt and policy.")
    gold_reward: Literal["vader", "reward_model"] = Field(
        "vader", description="Reward that judges SFT vs aligned: 'vader' (the default task's sentiment), or "
        "'reward_model': the checkpoint at evaluate.gold_reward_model_path, your own task's judge."
    )
    gold_reward_model_path: str | None = Field(
        None, description="HF sequence-classification checkpoint that judges, for gold_reward: reward_model. Use "
        "one other than the reward model that picks the pairs (score.reward_model_path): judged by the reward it "
        "optimised, a method looks better than it is."
    )
    seed: int = Field(1234, description="Sampling seed for evaluation (same for both policies).")
    temperature: float = Field(
        1.0, ge=0, description="Sampling temperature of both policies. The KL to the reference is estimated only at "
        "1 (with top_p 1), where the samples come from the aligned policy itself."
    )
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass of both policies (see temperature).")

    @model_validator(mode="after")
    def _judge_needs_a_checkpoint(self) -> EvaluateConfig:
        if self.gold_reward == "reward_model" and not self.gold_reward_model_path:
            raise ValueError("evaluate.gold_reward=reward_model needs evaluate.gold_reward_model_path (an HF "
                             "sequence-classification checkpoint)")
        return self


class TrackingConfig(Section):
    uri: str | None = Field(
        None, description="MLflow tracking URI (--tracking-uri wins); default: $MLFLOW_TRACKING_URI, else "
        "sqlite:///<run root>/mlflow.db."
    )
    experiment: str | None = Field(
        None, description="MLflow experiment name; default: $MLFLOW_EXPERIMENT_NAME, else 'rayalign'."
    )
    log_model: bool = Field(
        True, description="Log the aligned policy as an MLflow transformers model (MLflow 3 logged model, in the "
        "training stage's nested run, so it links to the data it trained on; the evaluation dataset is recorded "
        "against it). "
        "It copies the checkpoint into the artifact store: turn off for large models when the run directory's "
        "copy is enough."
    )
    register_model: str | None = Field(
        None, description="Register the logged aligned model in the MLflow Model Registry under this name (a new "
        "version per run). Needs log_model."
    )
    system_metrics: bool = Field(
        True, description="Sample the driver machine's CPU, memory, disk, network (and GPUs with pynvml) into the "
        "run as system/* metrics (MLflow's log_system_metrics)."
    )

    @model_validator(mode="after")
    def _registering_needs_a_logged_model(self) -> TrackingConfig:
        if self.register_model and not self.log_model:
            raise ValueError("tracking.register_model needs tracking.log_model=true (the registry versions a "
                             "logged model)")
        return self


class RayConfig(Section):
    address: str | None = Field(None, description="Ray cluster address; default: start or join a local Ray.")
    resource_wait_s: float = Field(
        0, ge=0, description="Before a stage starts, wait this long for the cluster (or its autoscaler) to offer "
        "the CPUs/GPUs the stage asks for, then fail naming what is missing; 0 = fail at once."
    )


class RunConfig(Section):
    name: str = Field("default", description="Run name; the default run directory is runs/<name>.")
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    sample: SampleConfig = Field(default_factory=SampleConfig)
    reference: ReferenceConfig = Field(default_factory=ReferenceConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)
    sft: SFTConfig = Field(default_factory=lambda: SFTConfig(learning_rate=2e-5))
    label: LabelConfig = Field(default_factory=LabelConfig)
    reward_model: RewardModelConfig = Field(default_factory=lambda: RewardModelConfig(learning_rate=5e-5))
    train: TrainConfig = Field(default_factory=TrainConfig)
    ppo: PPOConfig = Field(default_factory=PPOConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    rounds: int = Field(
        1, ge=1, description="Iterative (on-policy) rounds of the offline path: round r + 1 samples from round r's "
        "trained policy, then scores, selects, trains and evaluates again (folders sample.r2, train.r2, ...)."
    )
    rounds_reference: Literal["initial", "previous"] = Field(
        "initial", description="The reference policy of rounds after the first: the run's initial one "
        "(model.reference, else the SFT policy), or the policy the previous round trained, which is also the one "
        "that samples. Evaluation's KL is always to the initial reference, so rounds compare on one scale."
    )

    def needs_reference(self) -> bool:
        """Whether any stage's training uses log π_ref (SLiC alone does not)."""
        return self.train.loss != "slic" or self.train.budget_lambda > 0

    @model_validator(mode="after")
    def _reward_model_source(self) -> RunConfig:
        if self.score.reward == "reward_model" and not (self.score.reward_model_path or self.reward_model.enabled):
            raise ValueError("score.reward=reward_model needs score.reward_model_path=<checkpoint dir> or "
                             "reward_model.enabled=true")
        if self.select.judge == "reward_model" and not (self.select.judge_model_path or self.reward_model.enabled):
            raise ValueError("select.judge=reward_model needs select.judge_model_path=<checkpoint dir> or "
                             "reward_model.enabled=true")
        return self

    @model_validator(mode="after")
    def _rounds_are_offline(self) -> RunConfig:
        if self.rounds > 1 and self.ppo.enabled:
            raise ValueError(f"rounds={self.rounds} repeats the offline sample → select → train path, which "
                             "ppo.enabled=true replaces (PPO samples from its current policy at every step); "
                             "set rounds=1 or ppo.enabled=false")
        return self

    def reuses_sampler_logprobs(self, round: int) -> bool:
        """Whether the reference stage of `round` takes the sampler's log-probs as log π_ref: only
        while the policy that samples is the reference (round 1, or every round with
        rounds_reference=previous)."""
        return self.reference.reuse_sampler_logprobs and (round <= 1 or self.rounds_reference == "previous")

    def reference_is_sampler(self) -> bool:
        """Whether the reference model (model.reference, default: the policy that samples, i.e. the SFT
        model when sft runs) is the model that samples."""
        return self.model.reference is None or (self.model.reference == self.model.policy and not self.sft.enabled)

    @model_validator(mode="after")
    def _reuse_needs_plain_sampling(self) -> RunConfig:
        if self.reference.reuse_sampler_logprobs:
            if self.sample.temperature != 1.0 or self.sample.top_p != 1.0:
                raise ValueError(
                    "reference.reuse_sampler_logprobs needs sample.temperature=1 and sample.top_p=1 "
                    f"(got {self.sample.temperature}, {self.sample.top_p}); set it to false to compute "
                    "log π_ref with a forward pass"
                )
            if not self.reference_is_sampler():
                raise ValueError(
                    f"reference.reuse_sampler_logprobs needs the reference model ({self.model.reference}) to be the "
                    "model that samples (" + ("the SFT model" if self.sft.enabled else self.model.policy) + "); "
                    "unset model.reference or set reference.reuse_sampler_logprobs=false"
                )
        return self

    @model_validator(mode="after")
    def _no_redacted_credentials(self) -> RunConfig:
        # config.yaml and MLflow params hold URIs with their credentials redacted; such a copy of a
        # config (`rayalign show` suggests resuming from config.yaml) would fail to authenticate.
        for key, value in flatten(self).items():
            if isinstance(value, str) and f"://{REDACTED}@" in value:
                raise ValueError(
                    f"{key}={value!r} holds credentials that rayalign redacted when it recorded the config; "
                    f"give {key} the real URI, or keep credentials out of URIs (MLflow reads "
                    "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)")
        return self

    @model_validator(mode="after")
    def _rso_rejects_something(self) -> RunConfig:
        # Legal but almost surely a mistake: with n >= k RSO is no rejection sampling at all, the pairs
        # come from π_sft rather than the reward-tilted policy.
        if self.select.strategy == "rso":
            n, k = self.select.rso_samples_for(self.sample.k), self.sample.k
            if n >= k:
                how = "" if self.select.rso_num_samples is not None else " (the default, max(2, k // 4))"
                warnings.warn(f"select.rso_num_samples = {n}{how} >= sample.k = {k}: RSO rejects no candidate, "
                              "every sample is accepted; lower select.rso_num_samples (or unset it for "
                              "max(2, k // 4)) or raise sample.k", UserWarning, stacklevel=2)
        return self
