"""How rayalign's actors get their CPUs: the thread that runs a Ray Data actor's calls (OpenMP gives
each calling thread its own team, so a CPU actor built on one thread and called on another runs two
teams on its cores) and the niceness of a local Ray's workers (at Ray's 15, every wake-up of a Ray
service preempts an engine's OpenMP thread)."""

import os
import threading
from pathlib import Path

import pyarrow as pa
import pytest
import ray

from rayalign.actors.runtime import map_with_actors
from rayalign.config import ActorResources
from tests.conftest import local_head

REPO = Path(__file__).resolve().parent.parent


class ThreadIds:
    """Callable class for map_batches: each row gets the ids of the threads that built and called it."""

    def __init__(self, torch_threads=None):
        self.built_on = threading.get_ident()

    def __call__(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        return pa.table({"built_on": [self.built_on] * n, "called_on": [threading.get_ident()] * n})


@pytest.mark.parametrize("max_actors", [1, 2])
def test_a_cpu_actor_is_called_on_the_thread_that_built_it(ray_local, max_actors):
    ds = ray.data.range(6, override_num_blocks=3)
    res = ActorResources(min_actors=1, max_actors=max_actors, batch_size=2, torch_threads=1)
    rows = map_with_actors(ds, ThreadIds, {}, res).take_all()
    assert len(rows) == 6
    assert all(r["built_on"] == r["called_on"] for r in rows)


def test_a_local_ray_runs_its_workers_at_niceness_0(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_worker_niceness")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    with local_head(env, tmp_path) as info:
        assert info["worker_niceness"] == 0
