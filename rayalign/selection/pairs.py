"""Turn one prompt's scored samples into preference pairs with the configured strategy."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from rayalign.config import SelectConfig
from rayalign.data import schemas
from rayalign.selection.best_vs_worst import best_vs_worst
from rayalign.selection.rs_dpo import rs_dpo_pairs


def pair_indices(rewards: list[float], cfg: SelectConfig) -> list[tuple[int, int]]:
    """(chosen, rejected) candidate indices for one prompt, capped by largest reward gap first."""
    if cfg.strategy == "rs_dpo":
        pairs = rs_dpo_pairs(rewards, tau=cfg.tau, eta=cfg.eta)
    else:
        pairs = best_vs_worst(rewards)
    if cfg.max_pairs_per_prompt is not None:
        # Stable sort: equal gaps keep the strategy's order, so the cap is deterministic.
        pairs = sorted(pairs, key=lambda p: rewards[p[1]] - rewards[p[0]])[: cfg.max_pairs_per_prompt]
    return pairs


def pairs_for_prompt(rows: list[dict[str, Any]], cfg: SelectConfig) -> list[dict[str, Any]]:
    """Pair rows (schemas.PAIRS) built from the scored sample rows of one prompt."""
    rows = sorted(rows, key=lambda r: r["sample_idx"])
    out = []
    for c, r in pair_indices([row["reward"] for row in rows], cfg):
        chosen, rejected = rows[c], rows[r]
        out.append({
            "prompt_id": chosen["prompt_id"], "prompt": chosen["prompt"],
            "prompt_token_ids": chosen["prompt_token_ids"],
            "chosen": chosen["response"], "rejected": rejected["response"],
            "chosen_token_ids": chosen["response_token_ids"], "rejected_token_ids": rejected["response_token_ids"],
            "chosen_reward": chosen["reward"], "rejected_reward": rejected["reward"],
            "chosen_ref_logprob": chosen["ref_logprob"], "rejected_ref_logprob": rejected["ref_logprob"],
            "strategy": cfg.strategy,
        })
    return out


def pairs_table(group: pa.Table, cfg: SelectConfig) -> pa.Table:
    """map_groups function: all scored samples of one prompt in, its pairs out."""
    return pa.Table.from_pylist(pairs_for_prompt(group.to_pylist(), cfg), schema=schemas.PAIRS)
