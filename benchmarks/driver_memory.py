"""The driver's peak memory on the score → select → train-input path, at 1×, 10× and 100× the
demo's rows: does the driver hold whole stage datasets?

    python benchmarks/driver_memory.py [--scales 1 10 100] [--out benchmarks/results/driver_memory.json]

Each scale runs in a fresh process: a synthetic score stage (the demo's 64 prompts × 8 scored
responses of 40 tokens, times the scale; random rewards) is written as the score folder of a run
directory, then the real select stage runs on it (Ray Data groupby, pair rows written, the stage's
metrics and plot) and the train stage's input is prepared as train.run prepares it (the pairs
read, in their seeded order, into a Ray Dataset that the workers would stream) and counted. The
driver's RSS (this process only: Ray's workers and object store are other processes) is sampled
every 50 ms; the JSON holds each scale's rows, pairs, seconds, baseline (after imports and Ray's
start) and peak RSS, and the peak's ratio against the 1× run's.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

DEMO_PROMPTS, K, TOKENS = 64, 8, 40
WORDS = "the film was a great wonderful boring awful story with moving acting and dull plot".split()


def synthetic_score(path: Path, scale: int) -> int:
    """The score stage's dataset for DEMO_PROMPTS × scale prompts, K responses each, in files of
    at most 64 prompts (as Ray Data writes blocks); its row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rayalign.data import schemas

    rng = random.Random(scale)
    path.mkdir(parents=True)
    prompts = DEMO_PROMPTS * scale
    for start in range(0, prompts, 64):
        rows = []
        for p in range(start, min(start + 64, prompts)):
            prompt_ids = [rng.randrange(49152) for _ in range(24)]
            for i in range(K):
                ids = [rng.randrange(49152) for _ in range(TOKENS)]
                rows.append({"prompt_id": f"p{p:07d}", "prompt": f"Continue this movie review: review {p}",
                             "prompt_token_ids": prompt_ids, "sample_idx": i,
                             "response": " ".join(rng.choice(WORDS) for _ in range(TOKENS)),
                             "response_token_ids": ids, "sampler_logprob": -rng.uniform(20, 80),
                             "num_tokens": TOKENS, "finish_reason": "length", "ref_logprob": -rng.uniform(20, 80),
                             "reward": rng.uniform(-1, 1), "reward_model": "vader"})
        pq.write_table(pa.Table.from_pylist(rows, schema=schemas.SCORE), path / f"part-{start:07d}.parquet")
    return prompts * K


class PeakRSS:
    """This process's peak RSS while in a `with` block, sampled every 50 ms."""

    def __enter__(self) -> PeakRSS:
        self.peak, self._stop = psutil.Process().memory_info().rss, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, me.memory_info().rss)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def measure(scale: int) -> dict:
    """One scale, in this process: the synthetic score stage, then select and the train input."""
    import ray

    from rayalign.config import load_config
    from rayalign.data.parquet import read_table
    from rayalign.pipeline.context import RunContext
    from rayalign.pipeline.graph import cache_keys, plan
    from rayalign.pipeline.stages import PIPELINE, select
    from rayalign.pipeline.store import StageStore
    from rayalign.training.trainer import shuffled

    run_dir = Path(tempfile.mkdtemp(prefix=f"rayalign-driver-memory-{scale}x-"))
    rows = synthetic_score(run_dir / "score", scale)
    cfg = load_config("default")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    nodes = plan(cfg, PIPELINE)
    ctx = RunContext(cfg, run_dir, StageStore(run_dir), cfg.model.policy, None, tuple(nodes), cache_keys(nodes, cfg))
    ctx = ctx.at(next(n for n in nodes if n.stage is select.STAGE))
    baseline = psutil.Process().memory_info().rss
    out = run_dir / "select"
    out.mkdir()
    start = time.perf_counter()
    with PeakRSS() as peak:
        metrics = select.run(ctx, out)
        train_input = shuffled(read_table(out), cfg.train.seed)  # as train.run prepares it
        assert train_input.count() == metrics["pairs"]
    seconds = time.perf_counter() - start
    ray.shutdown()
    return {"scale": scale, "score_rows": rows, "pairs": metrics["pairs"], "seconds": seconds,
            "baseline_rss_mib": baseline / 2**20, "peak_rss_mib": peak.peak / 2**20,
            "peak_above_baseline_mib": (peak.peak - baseline) / 2**20}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/driver_memory.json"))
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child: measure one scale, print JSON
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one)))
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from record_run import machine, versions

    results = []
    for scale in args.scales:
        done = subprocess.run([sys.executable, __file__, "--one", str(scale)], capture_output=True, text=True,
                              check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    first = results[0]["peak_rss_mib"]
    for r in results:
        r["peak_ratio_to_first"] = r["peak_rss_mib"] / first
    args.out.write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "machine": machine(),
                                    "versions": versions(), "scales": results,
                                    "ratio": results[-1]["peak_ratio_to_first"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
