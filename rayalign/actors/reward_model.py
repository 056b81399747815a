"""Reward-model scorer: any HF sequence-classification checkpoint with one output logit."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import torch

from rayalign.actors.runtime import set_torch_threads
from rayalign.actors.vader import append_reward
from rayalign.pretrained import load_model, load_tokenizer

# transformers' "no limit" sentinel for tokenizer.model_max_length is about 1e30.
_NO_LIMIT = 10**12


def reward_inputs(tokenizer, texts: list[str]):
    """Padded encodings of prompt + response texts, as reward models are trained and scored: no
    special tokens added, cut from the left to tokenizer.model_max_length (the reward_model stage
    saves its max_seq_len there) so the end of the response, where the score is read, survives."""
    tokenizer.truncation_side = "left"
    limit = tokenizer.model_max_length
    return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False,
                     truncation=limit < _NO_LIMIT, max_length=limit if limit < _NO_LIMIT else None)


class RewardModelScorer:
    """Callable class for map_batches: `column` (default reward) = r(prompt + response) from the checkpoint's head."""

    def __init__(self, model_path: str, batch_size: int = 16, torch_threads: int | None = None,
                 column: str = "reward", trust_remote_code: bool = False):
        from transformers import AutoModelForSequenceClassification

        set_torch_threads(torch_threads)
        if not (Path(model_path) / "config.json").is_file():
            raise FileNotFoundError(f"score.reward_model_path {model_path!r} is not an HF checkpoint directory")
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = load_model(AutoModelForSequenceClassification, model_path, trust_remote_code)
        self.model = self.model.to(self.device).eval()
        if self.model.config.num_labels != 1:
            raise ValueError(f"reward model {model_path} has {self.model.config.num_labels} labels; "
                             "a reward model needs exactly one output (num_labels=1)")
        self.tokenizer = load_tokenizer(model_path, trust_remote_code)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # The score is read at the last non-pad token, which needs the pad id on the config.
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.name = Path(model_path).name
        self.batch_size, self.column = batch_size, column

    @torch.no_grad()
    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        out: list[float] = []
        for start in range(0, len(prompts), self.batch_size):
            texts = [p + r for p, r in zip(prompts[start:start + self.batch_size],
                                           responses[start:start + self.batch_size])]
            enc = reward_inputs(self.tokenizer, texts).to(self.device)
            out.extend(self.model(**enc).logits[:, 0].float().cpu().tolist())
        return out

    def __call__(self, batch: pa.Table) -> pa.Table:
        rewards = self.score(batch.column("prompt").to_pylist(), batch.column("response").to_pylist())
        if self.column != "reward":  # an extra score beside the stage's reward (e.g. a judge's)
            return batch.append_column(pa.field(self.column, pa.float64()), pa.array(rewards, pa.float64()))
        return append_reward(batch, rewards, self.name)
