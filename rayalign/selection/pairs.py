"""Turn one prompt's scored samples into preference pairs with the configured strategy."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from rayalign.config import SelectConfig
from rayalign.data import schemas
from rayalign.seeding import derived_seed
from rayalign.selection.best_vs_worst import best_vs_worst
from rayalign.selection.judges import JUDGES
from rayalign.selection.pairwise_ranking import CountingCompare, judge_compare, pairwise_ranking
from rayalign.selection.perplexity import perplexity_filter
from rayalign.selection.random_pair import random_pair
from rayalign.selection.rs_dpo import rs_dpo_pairs
from rayalign.selection.rso import rso_sample
from rayalign.selection.tournament import first_round_pairs, tournament_pairs

STATS = pa.schema([
    ("prompt_id", pa.string()),
    ("candidates", pa.int32()),   # scored samples of the prompt
    ("kept", pa.int32()),         # left after the perplexity filter
    ("accepted", pa.int32()),     # RSO: samples accepted (null for other strategies)
    ("comparisons", pa.int32()),  # pairwise_ranking: judge calls (null for other strategies)
    ("pairs", pa.int32()),
])


@dataclass
class Selection:
    """The pairs chosen for one prompt, as (chosen, rejected) row indices, and how they were found."""

    pairs: list[tuple[int, int]]
    candidates: int
    kept: int
    accepted: int | None = None
    comparisons: int | None = None


def select_pairs(rows: list[dict[str, Any]], cfg: SelectConfig) -> Selection:
    """Apply the perplexity filter, then the strategy, then the per-prompt cap, to one prompt's rows."""
    keep = list(range(len(rows)))
    if cfg.min_perplexity is not None or cfg.max_perplexity is not None:
        mask = perplexity_filter([r["sampler_logprob"] for r in rows], [r["num_tokens"] for r in rows],
                                 cfg.min_perplexity, cfg.max_perplexity)
        keep = [i for i, k in zip(keep, mask) if k]
    kept = [rows[i] for i in keep]
    rewards = [r["reward"] for r in kept]
    accepted = comparisons = None
    if cfg.strategy == "rs_dpo":
        pairs = rs_dpo_pairs(rewards, tau=cfg.tau, eta=cfg.eta)
    elif cfg.strategy == "best_vs_worst":
        pairs = best_vs_worst(rewards)
    elif cfg.strategy == "random_pair":
        rng = random.Random(derived_seed(cfg.seed, "random_pair", str(rows[0]["prompt_id"])) if rows else cfg.seed)
        pairs = random_pair(rewards, [r["response"] for r in kept], cfg.label_temperature, rng)
    elif cfg.strategy == "rso":
        seed = derived_seed(cfg.seed, "rso", str(rows[0]["prompt_id"])) if rows else cfg.seed
        rng = random.Random(seed)
        chosen = rso_sample(rewards, cfg.rso_samples_for(len(rows)), cfg.rso_beta, rng)
        accepted = len(chosen)
        # Acceptance order tracks reward (the max is accepted first), so pairing it as is would match
        # neighbours in reward (small gaps); pair a random permutation instead, as the paper does.
        entrants = list(chosen)
        rng.shuffle(entrants)
        pair_up = tournament_pairs if cfg.rso_pairing == "tournament" else first_round_pairs
        pairs = pair_up(entrants, rewards)
    else:
        judge = JUDGES[cfg.judge]()
        compare = CountingCompare(judge_compare(lambda i, j: judge.prob(kept[i], kept[j])))
        ranking = pairwise_ranking(len(kept), compare)
        pairs = [(ranking[0], ranking[-1])] if len(ranking) > 1 and compare(ranking[0], ranking[-1]) else []
        comparisons = compare.calls
    if cfg.max_pairs_per_prompt is not None:
        # Stable sort: equal gaps keep the strategy's order, so the cap is deterministic.
        pairs = sorted(pairs, key=lambda p: rewards[p[1]] - rewards[p[0]])[: cfg.max_pairs_per_prompt]
    return Selection([(keep[c], keep[r]) for c, r in pairs], len(rows), len(kept), accepted, comparisons)


def _in_sample_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Row order is whatever the groupby hands over; strategies that depend on it (RS-DPO's pair
    # order, the cap's tie-break, best-vs-worst's first maximum) must see sample order to be reproducible.
    return sorted(rows, key=lambda r: r["sample_idx"])


def _sorted_rows(group: pa.Table) -> list[dict[str, Any]]:
    return _in_sample_order(group.to_pylist())


def pairs_for_prompt(rows: list[dict[str, Any]], cfg: SelectConfig) -> list[dict[str, Any]]:
    """Pair rows (schemas.PAIRS) from the scored sample rows of one prompt, in any order: the rows
    are put in sample order (by sample_idx) first, as selection_table does."""
    rows = _in_sample_order(rows)
    return _pair_rows(rows, select_pairs(rows, cfg).pairs, cfg)


def _pair_rows(rows: list[dict[str, Any]], pairs: list[tuple[int, int]], cfg: SelectConfig) -> list[dict[str, Any]]:
    out = []
    for c, r in pairs:
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


SELECTION = STATS.append(pa.field("pair_rows", pa.list_(pa.struct(list(schemas.PAIRS)))))


def selection_table(group: pa.Table, cfg: SelectConfig) -> pa.Table:
    """map_groups function: all scored samples of one prompt in; one row out with the prompt's
    selection statistics (STATS) and its pairs (schemas.PAIRS rows) in `pair_rows`, so the
    selection runs once per prompt for both outputs."""
    rows = _sorted_rows(group)
    sel = select_pairs(rows, cfg)
    return pa.Table.from_pylist([{"prompt_id": rows[0]["prompt_id"], "candidates": sel.candidates,
                                  "kept": sel.kept, "accepted": sel.accepted, "comparisons": sel.comparisons,
                                  "pairs": len(sel.pairs), "pair_rows": _pair_rows(rows, sel.pairs, cfg)}],
                                schema=SELECTION)


def explode_pairs(batch: pa.Table) -> pa.Table:
    """map_batches function: SELECTION rows in, their pairs (schemas.PAIRS) out."""
    flat = pc.list_flatten(batch["pair_rows"])
    if len(flat) == 0:
        return schemas.PAIRS.empty_table()
    return pa.Table.from_struct_array(flat).cast(schemas.PAIRS)


def drop_pairs(batch: pa.Table) -> pa.Table:
    """map_batches function: SELECTION rows in, the statistics (STATS) out."""
    return batch.drop_columns(["pair_rows"])
