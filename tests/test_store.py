import pytest

from rayalign.config import load_config
from rayalign.data.store import StageStore
from rayalign.pipeline import STAGES, stage_keys


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


def test_stage_keys_change_from_the_changed_stage_on():
    base = stage_keys(load_config("default"))
    changed = stage_keys(load_config("default", ["select.eta=0.9"]))
    assert [s for s in STAGES if base[s] != changed[s]] == ["select", "train", "evaluate"]
    sampled = stage_keys(load_config("default", ["sample.k=4"]))
    assert [s for s in STAGES if base[s] != sampled[s]] == list(STAGES[1:])


def test_resources_do_not_invalidate_outputs():
    base = stage_keys(load_config("default"))
    scaled = stage_keys(load_config("default", ["sample.resources.max_actors=8", "train.resources.num_workers=4",
                                                "reference.resources.batch_size=64"]))
    assert base == scaled


def test_reused_sampler_logprobs_become_the_reference_column():
    import pyarrow as pa

    from rayalign.stages import _reuse_sampler_logprob

    out = _reuse_sampler_logprob(pa.table({"sampler_logprob": [-1.5, -2.0]}))
    assert out["ref_logprob"].to_pylist() == [-1.5, -2.0]
