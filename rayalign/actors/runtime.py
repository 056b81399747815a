"""Running actor classes: an autoscaling Ray Data actor pool per class, and the torch/OpenMP
threads inside an actor (or a Ray Train worker)."""

from __future__ import annotations

import os
import warnings
from typing import Any

import ray

from rayalign.config import ActorResources


def map_with_actors(ds: ray.data.Dataset, fn_cls: type, kwargs: dict[str, Any],
                    res: ActorResources, shards: bool = False) -> ray.data.Dataset:
    """ds.map_batches over an autoscaling pool of `fn_cls` actors sized by `res`; an actor whose
    process dies is restarted and its batch retried, res.max_restarts / max_task_retries times.
    With `shards`, every batch makes an output block of its own (a resumable stage writes a shard
    per batch), whatever the pool size."""
    extra = {}
    if res.torch_threads:
        # OpenMP reads OMP_NUM_THREADS once at process start (Ray sets it to num_cpus), and
        # vLLM-CPU's kernels check that it agrees with torch: so it must be set for the process.
        extra["runtime_env"] = {"env_vars": {"OMP_NUM_THREADS": str(res.torch_threads)}}
    if res.max_actors > 1 or shards:
        # A block goes to one actor task, whose output is one block, and a stage read back from one
        # Parquet file (or built with ray.data.from_arrow) is one block: without splitting, every actor
        # of the pool but one idles, and a stage's output is one shard.
        ds = ds.repartition(target_num_rows_per_block=res.batch_size)
    # Ray Data builds an actor on its main thread and calls it on a thread of its own, and OpenMP
    # gives each calling thread its own team: two teams oversubscribe the actor's cores, libgomp
    # then stops spinning between kernels, and generate ran 4-9% slower. A CPU actor is called on
    # the thread that built it (a GPU actor keeps the overlap of batching and calls).
    same_thread = {} if res.num_gpus else {"max_concurrent_calls_per_actor": 1, "enable_true_multi_threading": True}
    with warnings.catch_warnings():
        # Ray 2.60 names no parameter for actor restarts: map_batches takes them as remote args, which
        # it warns will go in Ray 2.64 (its pool's own defaults are set the same way).
        warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated", category=DeprecationWarning)
        return ds.map_batches(
            fn_cls,
            fn_constructor_kwargs={**kwargs, "torch_threads": res.torch_threads},
            batch_size=res.batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(min_size=res.min_actors, max_size=res.max_actors,
                                               **same_thread),
            num_cpus=res.num_cpus,
            num_gpus=res.num_gpus,
            max_restarts=res.max_restarts,  # Ray Data's defaults are -1 (forever) for both
            max_task_retries=res.max_task_retries,
            **extra,
        )


def set_torch_threads(threads: int | None) -> None:
    """Inside an actor or worker: use `threads` torch threads; None keeps Ray's default (its num_cpus)."""
    if threads:
        import torch

        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)
