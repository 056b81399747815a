"""Stage outputs in the run directory: atomic writes, manifests, and the resume rule.

A stage is complete when its directory holds a manifest whose config hash matches
the current one. New outputs are written to a hidden partial directory and swapped
in only once complete, so a failed or interrupted stage never damages what exists.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

MANIFEST = "_manifest.json"
PARTIAL = "_partial_of"  # in a resumable stage's partial directory: the cache key it is of
LOCK = ".lock"


class RunDirBusyError(RuntimeError):
    """Another rayalign run works in the same run directory."""


class RunDirError(OSError):
    """A run directory that cannot be created or written."""


def writable_run_dir(run_dir: Path) -> Path:
    """`run_dir`, created if need be and checked writable, resolved."""
    run_dir = Path(run_dir).expanduser()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise RunDirError(f"cannot write the run directory {run_dir}: {e.strerror or e}; give the run a directory "
                          "it can write (--run-dir, or run_dir= in rayalign.run)") from None
    return run_dir.resolve()


@contextmanager
def exclusive(run_dir: Path) -> Iterator[None]:
    """Hold the run directory for one run: a second run on it refuses instead of interleaving its
    outputs with the first's. The lock is the kernel's (flock), so a killed run leaves none behind."""
    with open(Path(run_dir) / LOCK, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise RunDirBusyError(
                f"run directory {run_dir} is in use by another rayalign run (pid {holder}); wait for it to "
                "finish, or give this run another --run-dir (run_dir= in rayalign.run)") from None
        f.truncate(0)
        f.write(str(os.getpid()))
        f.flush()
        yield


class StageStore:
    """The stage directories of one run."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def path(self, stage: str) -> Path:
        return self.run_dir / stage

    def manifest(self, stage: str) -> dict[str, Any] | None:
        self._restore(stage)
        file = self.path(stage) / MANIFEST
        return json.loads(file.read_text()) if file.is_file() else None

    def is_complete(self, stage: str, config_hash: str) -> bool:
        manifest = self.manifest(stage)
        return manifest is not None and manifest.get("config_hash") == config_hash

    @contextmanager
    def writing(self, stage: str, resume_key: str | None = None) -> Iterator[Path]:
        """Yield the stage's partial directory, empty; on success the caller must call commit(). With
        `resume_key`, a partial directory an interrupted run of that cache key left is kept as it is
        (a resumable stage goes on from its shards)."""
        partial = self.run_dir / f".{stage}.partial"
        marker = partial / PARTIAL
        if resume_key is None or not (marker.is_file() and marker.read_text() == resume_key):
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            if resume_key is not None:
                marker.write_text(resume_key)
        yield partial

    def _restore(self, stage: str) -> None:
        # A commit killed between its two renames left the previous output aside and none in place:
        # put it back, as the commit never happened.
        final, old = self.path(stage), self.run_dir / f".{stage}.old"
        if old.is_dir() and not final.exists():
            old.rename(final)

    def commit(self, stage: str, partial: Path, manifest: dict[str, Any]) -> None:
        """Write the manifest into `partial` and swap it in for the stage's directory: a process killed
        at any point leaves either the previous output or the new one, whole, in place."""
        manifest = {**manifest, "stage": stage, "completed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (partial / PARTIAL).unlink(missing_ok=True)
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        final, old = self.path(stage), self.run_dir / f".{stage}.old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        partial.rename(final)
        shutil.rmtree(old, ignore_errors=True)
