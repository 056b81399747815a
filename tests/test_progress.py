"""The live progress line: its arithmetic by hand, the step count it expects of a training stage,
the board counting a real Ray dataset, and the console redrawing it on a terminal only.
tests/test_pipeline_e2e.py checks the bars of a whole `rayalign run` in a real terminal."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable

import pyarrow as pa
import pytest

from rayalign.config import TrainerConfig
from rayalign.console import Console
from rayalign.progress import Progress, Snapshot, duration, render
from rayalign.training.loop import optimizer_steps, planned_steps


def test_render_by_hand():
    # From t = 100 s to 110 s: 20 more responses (2/s) and 500 more tokens (50/s); 90 to go take 45 s.
    snap = Snapshot("responses", total=120, done=30, tokens=600, first_t=100.0, first_done=10, first_tokens=100,
                    last_t=108.0)
    assert render(snap, now=110.0) == "[█████░░░░░░░░░░░░░░░] 30/120 responses · 50 tok/s · 45s left"
    assert render(Snapshot("steps", total=8)) == "[░░░░░░░░░░░░░░░░░░░░] 0/8 steps"  # nothing done: no rate
    assert render(Snapshot("rows", total=0, done=7, first_t=0.0, last_t=2.0)) == "7 rows"  # no total, no ETA
    # Done at t = 110 s: the rate stays that of the work (saving a model after it does not dilute it).
    done = Snapshot("steps", total=4, done=4, tokens=500, first_t=100.0, first_done=1, first_tokens=100, last_t=110.0)
    assert render(done, now=130.0) == "[████████████████████] 4/4 steps · 40 tok/s · 0s left"


@pytest.mark.parametrize("seconds,text", [(44.6, "45s"), (245, "4m05s"), (7380, "2h03m")])
def test_duration(seconds, text):
    assert duration(seconds) == text


@pytest.mark.parametrize("rows,micro,world,accumulation,epochs", [
    (100, 4, 1, 1, 1), (100, 4, 1, 3, 2), (10, 4, 2, 1, 1),  # 10 = 8 + a last micro-batch of 2 for 2 ranks
    (9, 4, 2, 1, 1),  # 9 = 8 + 1 row, fewer than the 2 ranks: skipped
    (17, 2, 3, 2, 1), (3, 4, 1, 2, 3)])
def test_planned_steps_are_the_steps_training_makes(rows, micro, world, accumulation, epochs):
    cfg = TrainerConfig(micro_batch_size=micro, gradient_accumulation_steps=accumulation, epochs=epochs,
                        resources={"num_workers": world})
    table = pa.table({"x": list(range(rows))})
    per_epoch = len(list(optimizer_steps(table.to_batches(max_chunksize=micro * world), accumulation, world, 0)))
    assert planned_steps(rows, cfg) == epochs * per_epoch


def settled(progress: Progress, done: Callable[[Snapshot], bool], timeout_s: float = 30) -> bool:
    import ray

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        snap, _ = ray.get(progress.board.read.remote())
        if snap is not None and done(snap):
            return True
        time.sleep(0.2)
    return False


def test_the_board_counts_a_dataset_as_it_flows(ray_local):
    import ray

    progress = Progress.start()
    ds = ray.data.from_arrow(pa.table({"num_tokens": [3] * 40})).repartition(4)
    assert progress.counted(ds, 40, "responses").count() == 40
    assert settled(progress, lambda s: s.done == 40)  # the counts are sent without waiting: they arrive soon
    snap, _ = ray.get(progress.board.read.remote())
    assert (snap.unit, snap.total, snap.done, snap.tokens) == ("responses", 40, 40, 120)
    # A resumed training run's steps move the count, and the rate starts after them.
    progress.phase(lambda: 10, "steps")
    progress.board.add.remote(6, skipped=True)
    progress.board.add.remote(1, 5)
    assert settled(progress, lambda s: s.done == 7)
    snap, _ = ray.get(progress.board.read.remote())
    assert (snap.done, snap.first_done, snap.tokens, snap.first_tokens) == (7, 7, 5, 5)
    assert Progress().counted(ds, 40, "responses") is ds  # no board: the dataset as it was


def read_all(primary: int) -> str:
    """What a terminal was sent: one read of a pty returns only what has crossed it so far."""
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # EIO once the other side is closed and drained (Linux)
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    return b"".join(chunks).decode()


def test_the_console_redraws_its_live_line_on_a_terminal_only():
    primary, secondary = os.openpty()
    with os.fdopen(secondary, "w") as tty:
        console = Console(tty)
        console.status("[1/2] sample: 3/8")
        console.status("[1/2] sample: 8/8")
        console.say("[1/2] sample: done")
        console.say("[2/2] train: running")  # no live line to clear
    shown = read_all(primary)
    assert shown == ("\r\x1b[2K[1/2] sample: 3/8\r\x1b[2K[1/2] sample: 8/8\r\x1b[2K[1/2] sample: done\r\n"
                     "[2/2] train: running\r\n")  # the terminal turns \n into \r\n
    piped = io.StringIO()
    console = Console(piped)
    console.status("[1/2] sample: 3/8")
    console.say("[1/2] sample: done")
    assert piped.getvalue() == "[1/2] sample: done\n"  # a file or a pipe gets the lines alone
