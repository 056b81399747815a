"""The stage table of docs/architecture.md, generated from the stage declarations (a test keeps the
page equal to it): `python -m rayalign.pipeline.describe`."""

from __future__ import annotations

from collections.abc import Sequence

from rayalign.pipeline.stage import Stage


def stage_table(stages: Sequence[Stage]) -> str:
    """A Markdown table: each stage, whether it runs once per round, what it reads, its dataset's
    columns, what sizes its resources."""
    rows = ["| stage | per round | reads | dataset columns | resources |", "|---|---|---|---|---|"]
    for stage in stages:
        reads = [s.name for s in stage.reads] + (["the latest policy"] if stage.starts_from_policy else [])
        columns = ", ".join(stage.schema.names) if stage.schema is not None else "(a model and its metrics)"
        rows.append(f"| {stage.name} | {'yes' if stage.per_round else '—'} | {', '.join(reads) or '—'} | {columns} "
                    f"| {stage.needs_set_by or '—'} |")
    return "\n".join(rows)


if __name__ == "__main__":
    from rayalign.pipeline.stages import PIPELINE

    print(stage_table(PIPELINE))
