"""Run a command and measure the memory of its whole process tree (the driver, the local Ray
cluster it starts, every Ray worker, vLLM's engine processes) by sampling it.

    python benchmarks/peak_memory.py --out mem.json [--interval 1] -- rayalign run ppo

RSS counts a page shared by several processes (the Ray object store, forked workers, mmapped
weights) once per process; PSS splits it among them, so the PSS sum is the tree's real footprint.
The JSON holds the wall seconds, the exit code, the peaks of both sums, the largest processes at
the PSS peak, and the sampled series.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time

import psutil


def tree(root: psutil.Process) -> list[psutil.Process]:
    """`root` and every live descendant."""
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _name(p: psutil.Process) -> str:
    return " ".join(p.cmdline()[:2])[-80:] or p.name()


def sample(processes: list[psutil.Process]) -> tuple[int, int, list[tuple[int, str]]]:
    """(RSS sum, PSS sum, [(PSS, name)] per process) in bytes; processes that ended are skipped."""
    rss = pss = 0
    each = []
    for p in processes:
        try:
            info, name = p.memory_full_info(), _name(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        rss, pss = rss + info.rss, pss + info.pss
        each.append((info.pss, name))
    return rss, pss, each


class _TreeWatch:
    """Calls `_sweep(processes of the tree)` every `interval` seconds, in a thread, while in a `with`
    block: the tree of process `pid` (default this one: the driver, the local Ray it started, every
    worker and vLLM engine)."""

    def __init__(self, interval: float, pid: int | None):
        self.interval, self.pid, self._stop = interval, pid, threading.Event()

    def __enter__(self):
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        root = psutil.Process(self.pid)
        while True:
            self._sweep(tree(root))
            if self._stop.wait(self.interval):
                return

    def _sweep(self, processes: list[psutil.Process]) -> None:
        raise NotImplementedError

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class PeakMemory(_TreeWatch):
    """The peak PSS of a process's tree, sampled every `interval` seconds while in a `with` block."""

    def __init__(self, interval: float = 2.0, pid: int | None = None):
        super().__init__(interval, pid)
        self.peak = 0
        self.largest: list[tuple[int, str]] = []  # the tree's largest processes at the peak, (PSS, name)

    def _sweep(self, processes: list[psutil.Process]) -> None:
        _, pss, each = sample(processes)
        if pss > self.peak:
            self.peak, self.largest = pss, sorted(each, reverse=True)[:4]


class CpuSeconds(_TreeWatch):
    """CPU seconds (user + system) that each process of a tree spends while in a `with` block,
    sampled every `interval` seconds: `by_process` maps a process's name to them, largest first. A
    process that ends between two samples loses its last interval."""

    def __init__(self, interval: float = 1.0, pid: int | None = None):
        super().__init__(interval, pid)
        self._first: dict[int, float] = {}
        self._last: dict[int, tuple[float, str]] = {}
        self.by_process: dict[str, float] = {}

    def _sweep(self, processes: list[psutil.Process]) -> None:
        first_sweep = not self._last
        for p in processes:
            try:
                t, name = p.cpu_times(), _name(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            # A process there from the start counts from then; one started later, all of its time.
            self._first.setdefault(p.pid, t.user + t.system if first_sweep else 0.0)
            self._last[p.pid] = (t.user + t.system, name)

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        totals: dict[str, float] = {}
        for pid, (seconds, name) in self._last.items():
            totals[name] = totals.get(name, 0.0) + seconds - self._first[pid]
        self.by_process = dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to measure after --")
    started = time.time()
    child = subprocess.Popen(command)
    root = psutil.Process(child.pid)
    series, peak_rss, peak_pss, top = [], 0, 0, []
    while child.poll() is None:
        rss, pss, each = sample(tree(root))
        series.append([round(time.time() - started, 1), rss, pss])
        peak_rss = max(peak_rss, rss)
        if pss > peak_pss:
            peak_pss, top = pss, sorted(each, reverse=True)[:8]
        time.sleep(args.interval)
    gib = 2**30
    result = {
        "command": " ".join(command), "exit_code": child.returncode, "wall_seconds": round(time.time() - started, 1),
        "interval_s": args.interval, "peak_pss_gib": round(peak_pss / gib, 3), "peak_rss_gib": round(peak_rss / gib, 3),
        "largest_at_peak": [{"pss_gib": round(p / gib, 3), "process": n} for p, n in top],
        "series_s_rss_pss_bytes": series,
    }
    with open(args.out, "w") as f:
        json.dump(result, f)
    print(f"peak PSS {result['peak_pss_gib']} GiB, peak RSS {result['peak_rss_gib']} GiB, "
          f"{result['wall_seconds']} s, exit {child.returncode}", file=sys.stderr)
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
