"""Stage outputs in the run directory: atomic writes, manifests, and the resume rule.

A stage is complete when its directory holds a manifest whose config hash matches
the current one. New outputs are written to a hidden partial directory and swapped
in only once complete, so a failed or interrupted stage never damages what exists.
"""

from __future__ import annotations

import json
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

MANIFEST = "_manifest.json"


class StageStore:
    """The stage directories of one run."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def path(self, stage: str) -> Path:
        return self.run_dir / stage

    def manifest(self, stage: str) -> dict[str, Any] | None:
        file = self.path(stage) / MANIFEST
        return json.loads(file.read_text()) if file.is_file() else None

    def is_complete(self, stage: str, config_hash: str) -> bool:
        manifest = self.manifest(stage)
        return manifest is not None and manifest.get("config_hash") == config_hash

    @contextmanager
    def writing(self, stage: str) -> Iterator[Path]:
        """Yield an empty partial directory; on success the caller must call commit()."""
        partial = self.run_dir / f".{stage}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        yield partial

    def commit(self, stage: str, partial: Path, manifest: dict[str, Any]) -> None:
        """Write the manifest into `partial` and swap it in for the stage's directory."""
        manifest = {**manifest, "stage": stage, "completed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        final, old = self.path(stage), self.run_dir / f".{stage}.old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        partial.rename(final)
        shutil.rmtree(old, ignore_errors=True)
