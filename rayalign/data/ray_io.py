"""Thin Ray Data helpers: read a stage, collect a dataset, write one."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import ray

from rayalign.data.parquet import parquet_files, parquet_rows


def read_stage(folder: Path) -> ray.data.Dataset:
    """A stage directory's Parquet files as a Ray dataset."""
    return ray.data.read_parquet(parquet_files(folder))


def to_table(ds: ray.data.Dataset) -> pa.Table:
    """Execute `ds` and return its rows as one Arrow table (for results small enough for the driver);
    a table without columns when it has no rows."""
    tables = ray.get(ds.to_arrow_refs())
    return pa.concat_tables(tables) if tables else pa.table({})


def write(ds: ray.data.Dataset, folder: Path) -> int:
    """Execute `ds` into Parquet files under `folder`; return the row count."""
    # min_rows_per_file merges the many small blocks that groupby/map_groups produce.
    ds.write_parquet(str(folder), min_rows_per_file=100_000)
    return parquet_rows(folder)
