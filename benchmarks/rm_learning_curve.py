"""Reward-model learning curve of the rs_dpo_chain task, in plain torch on one GPU.

The chain's SFT model samples 8 responses for each of the 360 built-in movie_reviews prompts
(rayalign's own prompt table: split, instruction, chat template); the first 6 of each are
labelled by rayalign's synthetic annotator (VADER under Bradley-Terry noise, as the label stage
does); a one-output sequence-classification head on the SFT model is trained with rayalign's
Bradley-Terry loss on the reward model's own encoding; after every epoch the held-out gold
agreement (all 15 pairs of each held-out prompt, gold ties left out) is printed as JSON.
The sizes and learning rates behind the rs_dpo_chain preset come from here: on CPU each
configuration would take an hour. It needs rayalign importable (a local Ray reads the prompts; no
deepspeed or vllm):

    SFT=<the chain's sft/model> python benchmarks/rm_learning_curve.py

benchmarks/results/rm_learning_curve.json was made by an earlier, self-contained version of this
script (same procedure, its own copies of the split and labelling; see git history).
"""

from __future__ import annotations

import json
import os
import random

import pyarrow as pa
import pyarrow.compute as pc
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from rayalign.actors.reward_model import reward_inputs
from rayalign.actors.vader import VaderReward
from rayalign.annotator import gold_agreement, label_group
from rayalign.config import LabelConfig
from rayalign.config.loading import load_config
from rayalign.data.errors import data_errors
from rayalign.data.prompts import prompt_token_ids, prompts_dataset
from rayalign.data.ray_io import to_table
from rayalign.losses import bradley_terry_loss
from rayalign.training.reward_model import prompt_grouped_order

SFT, K, LABELLED = os.environ.get("SFT", ""), 8, 6
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
CONFIGS = [  # (train prompts, pairs per prompt, lr, epochs, micro-batch, T, group by prompt)
    (64, 6, 3e-5, 3), (64, 6, 1e-4, 3), (64, 15, 3e-5, 3), (64, 15, 1e-4, 3), (64, 15, 1e-4, 3, 15, 0.1, True),
    (128, 15, 1e-4, 2, 15, 0.1, True), (192, 15, 1e-4, 2, 15, 0.1, True), (288, 15, 1e-4, 2, 15, 0.1, True),
    (192, 6, 1e-4, 2, 8, 0.1, False),
]


def sample(tok, prompts: pa.Table) -> pa.Table:
    """K responses per prompt from the SFT model (transformers generate, bf16 on a GPU)."""
    dtype = torch.bfloat16 if DEVICE == "cuda" else torch.float32
    lm = AutoModelForCausalLM.from_pretrained(SFT, dtype=dtype).to(DEVICE).eval()
    tok.padding_side, rows = "left", []
    for i in range(0, prompts.num_rows, 64):
        batch = prompts.slice(i, 64).to_pylist()
        ids = prompt_token_ids(tok, [r["prompt"] for r in batch])
        enc = tok.pad({"input_ids": ids}, return_tensors="pt").to(DEVICE)
        with torch.no_grad():
            out = lm.generate(**enc, do_sample=True, temperature=1.0, top_p=1.0, max_new_tokens=40,
                              num_return_sequences=K, pad_token_id=tok.pad_token_id)
        texts = tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        rows += [{**r, "sample_idx": j, "response": texts[n * K + j]} for n, r in enumerate(batch) for j in range(K)]
    tok.padding_side = "right"
    return VaderReward()(pa.Table.from_pylist(rows))


def labelled(scored: pa.Table, split: str, pairs_per_prompt: int, temperature: float, seed: int) -> pa.Table:
    """The annotator's pairs among each prompt's first LABELLED responses, for one split."""
    part = scored.filter(pc.and_(pc.equal(scored["split"], split), pc.less(scored["sample_idx"], LABELLED)))
    cfg = LabelConfig(pairs_per_prompt=pairs_per_prompt, temperature=temperature, seed=seed)
    groups = [label_group(part.filter(pc.equal(part["prompt_id"], pid)), cfg, {pid: split})
              for pid in sorted(set(part["prompt_id"].to_pylist()))]
    return pa.concat_tables(groups)


def scores(model, tok, texts: list[str]) -> list[float]:
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), 128):
            out += model(**reward_inputs(tok, texts[i:i + 128]).to(DEVICE)).logits[:, 0].float().tolist()
    return out


def run(tok, scored, held, n_prompts, ppp, lr, epochs, mbs=8, temperature=0.1, grouped=False):
    train_ids = sorted(set(scored.filter(pc.equal(scored["split"], "train"))["prompt_id"].to_pylist()))[:n_prompts]
    data = labelled(scored.filter(pc.is_in(scored["prompt_id"], pa.array(train_ids))), "train", ppp, temperature, 0)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(SFT, num_labels=1, dtype=torch.float32).to(DEVICE)
    model.config.pad_token_id = tok.pad_token_id
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    rows, agreement = data.to_pylist(), []
    for epoch in range(epochs):
        order = (prompt_grouped_order([r["prompt_id"] for r in rows], epoch) if grouped
                 else random.Random(epoch).sample(range(len(rows)), len(rows)))
        model.train()
        for i in range(0, len(order), mbs):
            batch = [rows[j] for j in order[i:i + mbs]]
            texts = [r["prompt"] + r["chosen"] for r in batch] + [r["prompt"] + r["rejected"] for r in batch]
            reward = model(**reward_inputs(tok, texts).to(DEVICE)).logits[:, 0].float()
            loss = bradley_terry_loss(reward[:len(batch)], reward[len(batch):]).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        model.eval()
        chosen = scores(model, tok, [r["prompt"] + r["chosen"] for r in held])
        rejected = scores(model, tok, [r["prompt"] + r["rejected"] for r in held])
        agreement.append(round(gold_agreement(chosen, rejected, [r["chosen_gold"] for r in held],
                                              [r["rejected_gold"] for r in held]), 3))
    print(json.dumps({"prompts": n_prompts, "ppp": ppp, "lr": lr, "mbs": mbs, "T": temperature, "dedupe": grouped,
                      "pairs": len(rows), "agreement_per_epoch": agreement}), flush=True)


def main() -> None:
    tok = AutoTokenizer.from_pretrained(SFT)
    tok.pad_token = tok.pad_token or tok.eos_token
    tok.model_max_length = 256  # reward_model.max_seq_len
    # All 360 prompts, rendered with the chain's instruction.
    data = load_config("rs_dpo_chain").data.model_copy(update={"max_train_prompts": None, "max_heldout_prompts": None})
    with data_errors():
        prompts = to_table(prompts_dataset(data, tok))
    scored = sample(tok, prompts)
    held = labelled(scored, "heldout", 15, 0.1, 1).to_pylist()
    for config in CONFIGS:
        run(tok, scored, held, *config)


if __name__ == "__main__":
    main()
