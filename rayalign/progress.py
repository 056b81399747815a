"""A stage's live progress on the console: items done of a total, tokens/s, time left.

Where the work happens (Ray Data's actor pools, rank 0 of a Ray Train run) counts into one small
Ray actor, the board; the driver reads it twice a second and redraws the stage's line. Counting
never waits: workers send fire-and-forget calls, and a board that is gone only stops the bar.
Times are the board's own clock, so the driver may run on another machine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import pyarrow as pa
import pyarrow.compute as pc
import ray

REFRESH_S = 0.5
BAR_WIDTH = 20
Total = int | Callable[[], int]


@dataclass(frozen=True)
class Snapshot:
    """What a phase of a stage has done: `done` of `total` `unit`s (total 0: unknown) and `tokens`;
    the rate counts from the first update of the phase (`first_*`), so start-up time (an engine
    loading, steps a resumed run skips) does not dilute it."""

    unit: str
    total: int
    done: int = 0
    tokens: int = 0
    first_t: float | None = None
    first_done: int = 0
    first_tokens: int = 0
    last_t: float | None = None


def render(snap: Snapshot, now: float | None = None) -> str:
    """'[████░░░░] 30/120 responses · 50 tok/s · 45s left' for a snapshot: the rates over the time
    since the phase's first update (until `now`, default its last update; a finished phase's until
    its last update, so the work after it does not dilute them)."""
    count = f"{snap.done}/{snap.total} {snap.unit}" if snap.total else f"{snap.done} {snap.unit}"
    parts = [count]
    if snap.total:
        filled = min(BAR_WIDTH, BAR_WIDTH * snap.done // snap.total)
        parts[0] = f"[{'█' * filled}{'░' * (BAR_WIDTH - filled)}] {count}"
    finished = snap.total and snap.done >= snap.total
    elapsed = ((now if now is not None and not finished else snap.last_t) or 0.0) - (snap.first_t or 0.0)
    if snap.first_t is not None and elapsed > 0:
        if snap.tokens > snap.first_tokens:
            parts.append(f"{(snap.tokens - snap.first_tokens) / elapsed:.0f} tok/s")
        rate = (snap.done - snap.first_done) / elapsed
        if snap.total and rate > 0:
            parts.append(f"{duration(max(0, snap.total - snap.done) / rate)} left")
    return " · ".join(parts)


def duration(seconds: float) -> str:
    """45s, 4m05s, 2h03m."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


@ray.remote(num_cpus=0)
class ProgressBoard:
    """The counts of the running phase, kept where every worker can reach them."""

    def __init__(self) -> None:
        self.snap: Snapshot | None = None

    def begin(self, total: int, unit: str) -> None:
        self.snap = Snapshot(unit=unit, total=total)

    def add(self, items: int, tokens: int = 0, skipped: bool = False) -> None:
        """Count `items` (and their `tokens`); `skipped` ones (done before a resume) move the count,
        not the rate."""
        s = self.snap
        if s is None:
            return
        now = time.monotonic()
        s = replace(s, done=s.done + items, tokens=s.tokens + tokens, last_t=now)
        if s.first_t is None or skipped:
            # The rate starts at the first real update: what came before it took an unknown time.
            s = replace(s, first_t=None if skipped else now, first_done=s.done, first_tokens=s.tokens)
        self.snap = s

    def clear(self) -> None:
        self.snap = None

    def read(self) -> tuple[Snapshot | None, float]:
        """The running phase's counts, and the board's clock now."""
        return self.snap, time.monotonic()


def reporter(board) -> Callable[..., None]:
    """report(items, tokens=0, skipped=False) into `board` from a worker; a no-op without a board."""
    if board is None:
        return lambda items, tokens=0, skipped=False: None

    def report(items: int, tokens: int = 0, skipped: bool = False) -> None:
        try:
            board.add.remote(items, tokens, skipped)
        except Exception:  # noqa: BLE001 — the bar is a courtesy: the work goes on without it
            pass
    return report


def _counted_batch(batch: pa.Table, board) -> pa.Table:
    tokens = (pc.sum(batch["num_tokens"]).as_py() or 0) if "num_tokens" in batch.column_names else 0
    reporter(board)(batch.num_rows, int(tokens))
    return batch


class Progress:
    """The driver's side of a run's progress: phases of the running stage, datasets that count their
    rows as they flow, and the live line. Progress(None) counts nothing (a stage run outside a
    pipeline run)."""

    def __init__(self, board=None) -> None:
        self.board = board

    @classmethod
    def start(cls) -> Progress:
        """A board in the connected Ray cluster (it takes no CPU)."""
        return cls(ProgressBoard.remote())

    def phase(self, total: Total, unit: str) -> None:
        """The running stage now works through `total` `unit`s (0: a total it does not know; a
        callable is only called when there is a bar to show)."""
        if self.board is not None:
            # Waited for: the workers' counts come from other callers, which Ray does not order
            # after this call, and a late begin would wipe the counts that got in before it.
            begun = self.board.begin.remote(int(total() if callable(total) else total), unit)
            try:
                ray.get(begun, timeout=30)
            except Exception:  # noqa: BLE001 — the bar is a courtesy: the stage goes on without it
                pass

    def count(self, ds: ray.data.Dataset) -> ray.data.Dataset:
        """`ds`, counting its rows (and their num_tokens) into the running phase as they come out."""
        if self.board is None:
            return ds
        return ds.map_batches(_counted_batch, fn_kwargs={"board": self.board}, batch_format="pyarrow",
                              batch_size=None, num_cpus=0)

    def counted(self, ds: ray.data.Dataset, total: Total, unit: str) -> ray.data.Dataset:
        """`ds` counted (count) as a phase of `total` `unit`s."""
        self.phase(total, unit)
        return self.count(ds)

    @contextmanager
    def shown(self, show: Callable[[str], None] | None, head: str) -> Iterator[None]:
        """While the block runs, show(f'{head}: <bar>') every REFRESH_S once a phase has begun."""
        if self.board is None or show is None:
            yield
            return
        stop = threading.Event()

        def draw() -> None:
            shown = None
            while not stop.wait(REFRESH_S):
                try:
                    snap, now = ray.get(self.board.read.remote(), timeout=5)
                except Exception:  # noqa: BLE001 — no board, no bar; the stage is unaffected
                    return
                line = f"{head}: {render(snap, now)}" if snap is not None else None
                if line is not None and line != shown:
                    show(line)
                    shown = line
        thread = threading.Thread(target=draw, name="rayalign-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            show("")
            self.board.clear.remote()  # the next stage starts without this one's counts


NO_PROGRESS = Progress()
