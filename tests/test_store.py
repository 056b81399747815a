import pytest

from rayalign.config import load_config
from rayalign.pipeline.stages import PIPELINE
from rayalign.pipeline.graph import cache_keys, plan
from rayalign.pipeline.store import StageStore


def test_commit_swaps_in_the_new_output(tmp_path):
    store = StageStore(tmp_path)
    with store.writing("sample") as partial:
        (partial / "a.txt").write_text("v1")
        store.commit("sample", partial, {"config_hash": "h1"})
    assert store.is_complete("sample", "h1") and not store.is_complete("sample", "h2")
    with store.writing("sample") as partial:
        (partial / "a.txt").write_text("v2")
        store.commit("sample", partial, {"config_hash": "h2"})
    assert (store.path("sample") / "a.txt").read_text() == "v2" and store.is_complete("sample", "h2")


def test_failed_stage_leaves_previous_output_intact(tmp_path):
    store = StageStore(tmp_path)
    with store.writing("score") as partial:
        (partial / "a.txt").write_text("good")
        store.commit("score", partial, {"config_hash": "h1"})
    with pytest.raises(RuntimeError):
        with store.writing("score") as partial:
            (partial / "a.txt").write_text("half-written")
            raise RuntimeError("stage crashed")
    assert (store.path("score") / "a.txt").read_text() == "good" and store.is_complete("score", "h1")


# A process that commits a new output of "score" over a complete old one and is SIGKILLed just
# before its Nth rename: the commit's two renames (old output aside, new one in) are the points
# between writing and publishing.
KILLED_COMMIT = """
import os, signal, sys
from pathlib import Path
from rayalign.pipeline.store import StageStore

renames, rename = [0], Path.rename
def dying_rename(self, target):
    renames[0] += 1
    if renames[0] == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)
    return rename(self, target)
Path.rename = dying_rename
store = StageStore(Path(sys.argv[1]))
with store.writing("score") as partial:
    (partial / "a.txt").write_text("new")
    store.commit("score", partial, {"config_hash": "new"})
"""


@pytest.mark.parametrize("kill_before_rename", [1, 2])
def test_a_commit_killed_between_write_and_publish_is_never_taken_as_complete(tmp_path, kill_before_rename):
    import signal
    import subprocess
    import sys

    store = StageStore(tmp_path)
    with store.writing("score") as partial:
        (partial / "a.txt").write_text("old")
        store.commit("score", partial, {"config_hash": "old"})
    done = subprocess.run([sys.executable, "-c", KILLED_COMMIT, str(tmp_path), str(kill_before_rename)])
    assert done.returncode == -signal.SIGKILL
    assert not store.is_complete("score", "new")  # the new output, written with its manifest, is not published
    # The old output is back in place, complete (killed after moving it aside, before the swap: restored).
    assert store.is_complete("score", "old") and (store.path("score") / "a.txt").read_text() == "old"
    with store.writing("score") as partial:  # the rerun commits over what the killed one left
        (partial / "a.txt").write_text("new")
        store.commit("score", partial, {"config_hash": "new"})
    assert store.is_complete("score", "new") and sorted(p.name for p in tmp_path.iterdir()) == ["score"]


def test_a_resumable_stage_keeps_the_partial_output_of_the_same_key_only(tmp_path):
    store = StageStore(tmp_path)
    with store.writing("sample", resume_key="k1") as partial:
        (partial / "part-1.parquet").write_text("shard")  # then the driver is killed
    with store.writing("sample", resume_key="k1") as partial:
        assert (partial / "part-1.parquet").is_file()  # the same key: the shard is kept
        store.commit("sample", partial, {"config_hash": "k1"})
    assert sorted(p.name for p in store.path("sample").iterdir()) == ["_manifest.json", "part-1.parquet"]
    with store.writing("sample", resume_key="k1") as partial:
        (partial / "part-2.parquet").write_text("shard")
    with store.writing("sample", resume_key="k2") as partial:  # another key: computed afresh
        assert [p.name for p in partial.glob("*.parquet")] == []
    with store.writing("sample") as partial:  # not resumable: always afresh
        assert list(partial.iterdir()) == []


def test_remaining_drops_the_keys_a_killed_run_wrote_whole(tmp_path, ray_local):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray

    from rayalign.pipeline.stage_tools import remaining

    def shard(name, prompts, k=2):
        pq.write_table(pa.table({"prompt_id": [p for p in prompts for _ in range(k)],
                                 "sample_idx": [i for _ in prompts for i in range(k)]}), tmp_path / name)

    shard("a.parquet", ["p0", "p1"])
    shard("b.parquet", ["p2"], k=1)      # p2 only in part: the file goes, p2 is sampled again
    (tmp_path / "c.parquet").write_bytes(b"PAR1 torn")  # a writer killed mid-file
    todo = ray.data.from_items([{"prompt_id": f"p{i}", "prompt": "x"} for i in range(4)])
    rest, kept = remaining(todo, tmp_path, ("prompt_id",), per_key=2)
    assert kept == 4 and sorted(r["prompt_id"] for r in rest.take_all()) == ["p2", "p3"]
    assert sorted(p.name for p in tmp_path.glob("*.parquet")) == ["a.parquet"]
    # Row keys of two columns (reference, score): (p0, 1) is done, (p0, 0) is not.
    pq.write_table(pa.table({"prompt_id": ["p0"], "sample_idx": [1]}), tmp_path / "a.parquet")
    rows = ray.data.from_items([{"prompt_id": "p0", "sample_idx": i} for i in range(2)])
    rest, kept = remaining(rows, tmp_path, ("prompt_id", "sample_idx"))
    assert kept == 1 and rest.take_all() == [{"prompt_id": "p0", "sample_idx": 0}]
    assert remaining(rows, tmp_path / "empty", ("prompt_id",)) == (rows, 0)


def stage_keys(cfg):
    return cache_keys(plan(cfg, PIPELINE), cfg)


def test_stage_keys_change_from_the_changed_stage_on():
    base = stage_keys(load_config("default"))
    assert list(base) == [node.id for node in plan(load_config("default"), PIPELINE)]
    changed = stage_keys(load_config("default", ["select.eta=0.9"]))
    assert [s for s in base if base[s] != changed[s]] == ["select", "train", "evaluate"]
    sampled = stage_keys(load_config("default", ["sample.k=4"]))
    assert [s for s in base if base[s] != sampled[s]] == list(base)[1:]


def test_chain_keys_follow_the_stage_graph():
    chain = load_config("rs_dpo_chain")
    base = stage_keys(chain)
    assert list(base) == ["prompts", "sft", "evaluate_sft", "label_sample", "label", "reward_model", "sample",
                          "reference", "score", "select", "train", "evaluate"]
    # A new reward model rescores the same samples: sampling and the reference stay cached.
    rm = stage_keys(load_config("rs_dpo_chain", ["reward_model.learning_rate=3e-4"]))
    assert [s for s in base if base[s] != rm[s]] == ["reward_model", "score", "select", "train", "evaluate"]
    # A new SFT model invalidates everything downstream of it, but not the prompts.
    sft = stage_keys(load_config("rs_dpo_chain", ["sft.epochs=2"]))
    assert [s for s in base if base[s] == sft[s]] == ["prompts"]
    # A preference file replaces the label stages.
    from_file = stage_keys(load_config("rs_dpo_chain", ["reward_model.data=prefs.jsonl"]))
    assert "label" not in from_file and "label_sample" not in from_file


def test_resources_and_run_only_settings_do_not_invalidate_outputs():
    base = stage_keys(load_config("default"))
    scaled = stage_keys(load_config("default", ["sample.resources.max_actors=8", "train.resources.num_workers=4",
                                                "reference.resources.batch_size=64",
                                                "train.checkpoint_every_minutes=5",
                                                "train.gradient_checkpointing=true", "train.share_prompt=false"]))
    assert base == scaled


def test_reused_sampler_logprobs_become_the_reference_column():
    import pyarrow as pa

    from rayalign.pipeline.stages.reference import _reuse_sampler_logprob

    out = _reuse_sampler_logprob(pa.table({"sampler_logprob": [-1.5, -2.0]}))
    assert out["ref_logprob"].to_pylist() == [-1.5, -2.0]
