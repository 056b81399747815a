"""Resource check before a stage: bundles per stage, packing, and ensure_resources on a real local Ray."""

from __future__ import annotations

import time

import pytest

from rayalign.config import load_config
from rayalign.pipeline import resources
from rayalign.pipeline.resources import ResourceError, ensure_resources, fits
from rayalign.pipeline.stages import PIPELINE

STAGES = {stage.name: stage for stage in PIPELINE}


def stage_bundles(cfg, name):
    return STAGES[name].bundles(cfg)


@pytest.fixture
def requests(monkeypatch):
    """Every request_resources call's bundles; passed on to Ray's own function."""
    from ray.autoscaler import sdk

    calls, real = [], sdk.request_resources
    monkeypatch.setattr(sdk, "request_resources", lambda bundles: (calls.append(bundles), real(bundles=bundles)))
    return calls


def test_bundles_of_every_stage():
    cfg = load_config("default", [
        "sample.resources={min_actors: 2, max_actors: 3, num_cpus: 2, num_gpus: 0.5}",
        "reference.reuse_sampler_logprobs=false", "reference.resources={min_actors: 1, num_cpus: 3}",
        "score.resources={min_actors: 3, max_actors: 3, num_cpus: 0.5}",
        "train.resources={num_workers: 2, use_gpu: true, cpus_per_worker: 4}",
        "sft.enabled=true", "sft.resources={num_workers: 3, cpus_per_worker: 2}",
        "reward_model.enabled=true", "reward_model.resources={use_gpu: true, cpus_per_worker: 1}",
    ])
    sampler = [{"CPU": 2.0, "GPU": 0.5}] * 2
    assert stage_bundles(cfg, "sample") == sampler
    assert stage_bundles(cfg, "reference") == [{"CPU": 3.0}]
    assert stage_bundles(cfg, "score") == [{"CPU": 0.5}] * 3
    assert stage_bundles(cfg, "train") == [{"CPU": 4.0, "GPU": 1.0}] * 2
    assert stage_bundles(cfg, "evaluate") == sampler  # evaluation samples with the sample settings
    assert stage_bundles(cfg, "sft") == [{"CPU": 2.0}] * 3
    assert stage_bundles(cfg, "reward_model") == [{"CPU": 1.0, "GPU": 1.0}]
    assert stage_bundles(cfg, "label_sample") == sampler  # vLLM with the sample settings
    assert stage_bundles(cfg, "label") == [{"CPU": 0.5}] * 3  # gold-reward actors: the score settings
    for stage in ("prompts", "select"):
        assert stage_bundles(cfg, stage) == [], stage
    judged = load_config("default", ["select.strategy=pairwise_ranking", "select.judge=reward_model",
                                     "select.judge_model_path=/rm", "score.resources.num_gpus=0.25"])
    assert stage_bundles(judged, "select") == [{"CPU": 1.0, "GPU": 0.25}]


def test_bundles_skip_what_does_not_run():
    assert stage_bundles(load_config("default", ["sft.enabled=false"]), "sft") == []
    assert stage_bundles(load_config("default", ["reward_model.enabled=false"]), "reward_model") == []
    reuse = load_config("default", ["reference.reuse_sampler_logprobs=true", "reference.resources.num_gpus=1"])
    assert stage_bundles(reuse, "reference") == []
    slic = load_config("default", ["train.loss=slic", "reference.reuse_sampler_logprobs=false"])
    assert stage_bundles(slic, "reference") == []
    assert stage_bundles(load_config("default", ["train.loss=dpo", "reference.reuse_sampler_logprobs=false"]),
                         "reference") == [{"CPU": 1.0}]
    free = load_config("default", ["score.resources.num_cpus=0"])
    assert stage_bundles(free, "score") == []


def test_fits_packs_bundles_onto_single_nodes():
    nodes = [{"CPU": 2.0}, {"CPU": 4.0, "GPU": 1.0}]
    assert fits([{"CPU": 2.0}] * 3, nodes)
    assert not fits([{"CPU": 2.0}] * 4, nodes)
    assert fits([{"CPU": 1.0, "GPU": 0.5}] * 2 + [{"CPU": 2.0}] * 2, nodes)
    assert not fits([{"CPU": 3.0, "GPU": 0.5}, {"CPU": 2.0, "GPU": 0.5}], nodes)  # both GPU bundles need node 2
    assert not fits([{"CPU": 5.0}], nodes)  # 6 CPUs in all, but 4 at most on one node


def test_a_fitting_stage_passes(ray_local, requests):
    cfg = load_config("default", ["sample.resources={min_actors: 2, max_actors: 2, num_cpus: 1}"])
    ensure_resources(stage_bundles(cfg, "sample"), 0, "sample")
    ensure_resources(stage_bundles(cfg, "sample"), 5, "sample")
    assert requests == []  # nothing asked of the autoscaler when the cluster already fits


def _no_gpu(ray):
    if any(node["Resources"].get("GPU") for node in ray.nodes() if node["Alive"]):
        pytest.skip("the local Ray has a GPU")


def test_gpus_on_a_cpu_cluster_fail_at_once(ray_local, requests):
    _no_gpu(ray_local)
    cfg = load_config("default", ["score.resources={min_actors: 2, max_actors: 2, num_gpus: 1}"])
    start = time.monotonic()
    with pytest.raises(ResourceError) as err:
        ensure_resources(stage_bundles(cfg, "score"), cfg.ray.resource_wait_s, "score", STAGES["score"].needs_set_by)
    assert time.monotonic() - start < 1.0
    msg = str(err.value)
    assert "stage 'score' needs 2 × {GPU: 1, CPU: 1}" in msg
    assert "at most {CPU: 2} per node; no node has GPU" in msg
    assert "score.resources.min_actors / num_gpus" in msg and "ray.resource_wait_s" in msg
    assert requests == []


def test_waiting_in_vain_fails_after_the_wait(ray_local, requests):
    _no_gpu(ray_local)
    bundles = stage_bundles(load_config("default", ["train.resources.use_gpu=true"]), "train")
    start = time.monotonic()
    with pytest.raises(ResourceError, match=r"stage 'train' needs 1 × \{GPU: 1, CPU: 1\}.*within "
                                            r"ray.resource_wait_s=2 s.*train.resources.num_workers"):
        ensure_resources(bundles, 2, "train", STAGES["train"].needs_set_by, poll_s=0.25)
    assert 1.9 <= time.monotonic() - start < 8
    assert requests == [bundles, []]  # asked, then withdrawn so the autoscaler can scale down


def test_too_many_bundles_together(ray_local):
    cfg = load_config("default", ["sample.resources={min_actors: 3, max_actors: 3, num_cpus: 1}"])
    with pytest.raises(ResourceError, match=r"3 × \{CPU: 1\}; they do not fit on its 1 node\(s\) together"):
        ensure_resources(stage_bundles(cfg, "sample"), 0, "sample")


def test_returns_once_a_node_joins(monkeypatch):
    from ray.autoscaler import sdk

    calls = []
    monkeypatch.setattr(sdk, "request_resources", lambda bundles: calls.append(bundles))
    clusters = iter([[{"CPU": 2.0}]] * 3 + [[{"CPU": 2.0}, {"CPU": 1.0, "GPU": 1.0}]])
    monkeypatch.setattr(resources, "node_totals", lambda: next(clusters))
    ensure_resources([{"CPU": 1.0, "GPU": 1.0}], 30, "score", poll_s=0.01)
    assert calls == [[{"CPU": 1.0, "GPU": 1.0}], []]
    assert next(clusters, None) is None  # polled until the GPU node showed up, not beyond
