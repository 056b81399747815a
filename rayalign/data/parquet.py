"""A stage directory's Parquet files: listing, row counts, reading."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq


def parquet_files(folder: Path) -> list[str]:
    """The Parquet files of a stage directory, sorted."""
    return sorted(str(p) for p in Path(folder).glob("*.parquet"))


def parquet_rows(folder: Path) -> int:
    """Row count of a stage directory's Parquet files, from their footers."""
    return sum(pq.ParquetFile(f).metadata.num_rows for f in parquet_files(folder))


def read_table(folder: Path, columns: list[str] | None = None):
    """All Parquet files of a stage directory as one Arrow table (only `columns`, when given)."""
    files = parquet_files(folder)
    if not files:
        raise FileNotFoundError(f"{folder} holds no Parquet files")
    return pq.ParquetDataset(files).read(columns=columns)
