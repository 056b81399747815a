"""The stage graph on toy stages, through the real runner (local Ray, MLflow): a stage declared in
one place, run once per round with each round starting from the previous round's output, and an
alternative stage that the config swaps in. The toy stages are docs/architecture.md's worked example."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rayalign.config import load_config
from rayalign.data.parquet import read_table
from rayalign.pipeline.context import RunContext
from rayalign.pipeline.graph import cache_keys, plan
from rayalign.pipeline.runner import run_pipeline
from rayalign.pipeline.stage import Stage


def write_value(out: Path, value: int, policy: bool = False) -> dict:
    pq.write_table(pa.table({"value": [value]}), out / "value.parquet")
    if policy:  # a toy "checkpoint": the next round starts from it
        (out / "model").mkdir()
        (out / "model" / "value.txt").write_text(str(value))
    return {"rows": 1, "value": value}


def run_seed(ctx: RunContext, out: Path) -> dict:
    return write_value(out, ctx.cfg.data.seed + 1, policy=True)


def run_grow(ctx: RunContext, out: Path) -> dict:
    # The latest policy: the seed's model in round 1, the previous round's grow after.
    start = int((Path(ctx.latest_policy()) / "value.txt").read_text())
    return write_value(out, 2 * start, policy=True)


def adder(amount: int):
    def run(ctx: RunContext, out: Path) -> dict:
        return write_value(out, read_table(ctx.path(GROW))["value"][0].as_py() + amount)
    return run


def run_finish(ctx: RunContext, out: Path) -> dict:
    done = next(stage for stage in (ADD_ONE, ADD_HUNDRED) if ctx.runs(stage))
    return write_value(out, read_table(ctx.path(done))["value"][0].as_py())


SEED = Stage(name="seed", run=run_seed, settings=lambda cfg: [cfg.data.seed], produces_policy=True)
GROW = Stage(name="grow", run=run_grow, per_round=True, produces_policy=True, starts_from_policy=True)
# Alternatives: the config picks one (as train.loss, or an online trainer, would).
ADD_ONE = Stage(name="add_one", run=adder(1), reads=(GROW,), per_round=True,
                active=lambda cfg: cfg.train.loss == "dpo")
ADD_HUNDRED = Stage(name="add_hundred", run=adder(100), reads=(GROW,), per_round=True,
                    active=lambda cfg: cfg.train.loss == "slic")
FINISH = Stage(name="finish", run=run_finish, reads=(ADD_ONE, ADD_HUNDRED),
               summary=lambda folder, metrics: {"toy_value": metrics["value"]})
TOY = (SEED, GROW, ADD_ONE, ADD_HUNDRED, FINISH)


def toy_config(tiny_model, *overrides):
    return load_config("default", [f"model.policy={tiny_model}", *overrides])


def manifest(run_dir: Path, node: str) -> dict:
    return json.loads((run_dir / node / "_manifest.json").read_text())


def test_rounds_and_alternatives_in_the_plan(tiny_model):
    cfg = toy_config(tiny_model, "rounds=3")
    assert [n.id for n in plan(cfg, TOY)] == [
        "seed", "grow", "add_one", "grow.r2", "add_one.r2", "grow.r3", "add_one.r3", "finish"]
    assert [n.id for n in plan(toy_config(tiny_model, "train.loss=slic"), TOY)] == [
        "seed", "grow", "add_hundred", "finish"]
    with pytest.raises(ValueError, match="follow each other"):
        plan(cfg, (GROW, SEED, ADD_ONE))
    keys = cache_keys(plan(cfg, TOY), cfg)
    assert len(set(keys.values())) == len(keys)  # each round's nodes have keys of their own
    one_round = toy_config(tiny_model)
    assert cache_keys(plan(one_round, TOY), one_round)["add_one"] == keys["add_one"]  # round 1 as in a 1-round run


def test_later_rounds_train_against_the_reference_rounds_reference_names(tmp_path, tiny_model):
    """Round 2's reference is the initial policy or round 1's; evaluation's KL is always to the
    initial one; and switching rounds_reference recomputes from round 2's reference on, nothing of round 1."""
    from rayalign.pipeline.graph import Node
    from rayalign.pipeline.stages import PIPELINE, reference
    from rayalign.pipeline.store import StageStore

    keys = {}
    for choice, round_2 in (("initial", tiny_model), ("previous", str(tmp_path / "train" / "model"))):
        cfg = toy_config(tiny_model, "rounds=2", f"rounds_reference={choice}")
        nodes = plan(cfg, PIPELINE)
        keys[choice] = cache_keys(nodes, cfg)
        run = RunContext(cfg, tmp_path, StageStore(tmp_path), tiny_model, None, tuple(nodes), keys[choice])
        one, two = run.at(Node(reference.STAGE, 1)), run.at(Node(reference.STAGE, 2))
        assert (reference.reference_model(one), reference.reference_model(two)) == (tiny_model, round_2)
        assert reference.initial_reference(two) == tiny_model
    changed = [n for n in keys["initial"] if keys["initial"][n] != keys["previous"][n]]
    assert changed == ["reference.r2", "score.r2", "select.r2", "train.r2", "evaluate.r2"]


def test_the_runner_runs_rounds_reuses_and_swaps(tmp_path, tiny_model, ray_local):
    run_dir = tmp_path / "toy"
    logs: list[str] = []
    summary = run_pipeline(toy_config(tiny_model, "rounds=3"), run_dir, log=logs.append, stages=TOY)
    # seed 1; grow doubles the latest policy each round: 2, 4, 8; add_one adds 1 in each round.
    values = {n: manifest(run_dir, n)["metrics"]["value"] for n in ("grow", "grow.r2", "grow.r3", "add_one.r3")}
    assert values == {"grow": 2, "grow.r2": 4, "grow.r3": 8, "add_one.r3": 9}
    assert summary["toy_value"] == 9 and list(summary["stage_seconds"])[-1] == "finish"
    # Round 2 chains round 1's key through the policy it starts from; finish reads the last round.
    assert set(manifest(run_dir, "grow.r2")["inputs"]) == {"grow"}
    assert set(manifest(run_dir, "finish")["inputs"]) == {"add_one.r3"}

    logs.clear()
    run_pipeline(toy_config(tiny_model, "rounds=3"), run_dir, log=logs.append, stages=TOY)
    assert len(logs) == 8 and all("complete, reusing" in line for line in logs)

    # The alternative stage replaces add_one with no change to the runner; grow stays cached.
    logs.clear()
    swapped = run_pipeline(toy_config(tiny_model, "train.loss=slic", "rounds=3"), run_dir, log=logs.append,
                           stages=TOY)
    assert swapped["toy_value"] == 108
    ran = [line.split("] ")[1].split(":")[0] for line in logs if line.endswith("running")]
    assert ran == ["add_hundred", "add_hundred.r2", "add_hundred.r3", "finish"]


def test_the_architecture_page_shows_the_declared_stages():
    from rayalign.pipeline.describe import stage_table
    from rayalign.pipeline.stages import PIPELINE

    page = (Path(__file__).parents[1] / "docs" / "architecture.md").read_text()
    assert stage_table(PIPELINE) in page  # regenerate with: python -m rayalign.pipeline.describe
