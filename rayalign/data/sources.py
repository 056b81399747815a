"""Where user data comes from (docs/data.md): a built-in set, a .jsonl, .json or .parquet file, a
directory or glob of them, a dataset saved with HF datasets' save_to_disk, or a URI that Ray Data
reads (s3://, gs://, file://). Ray Data read tasks read it file by file, so a large set streams
instead of landing in the driver, and every row keeps where it came from for error messages."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from itertools import islice
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray
from ray.data.datasource import FileBasedDatasource

from rayalign.data.errors import PromptDataError
from rayalign.data.formats import EXAMPLES, FORMATS, RowError

SUFFIXES = (".jsonl", ".json", ".parquet", ".arrow")
CHUNK_ROWS = 1024  # rows per block a read task yields
GLOB_CHARS = "*?["


def builtin_sets(kind: str) -> list[str]:
    """Names usable as 'builtin:NAME' for a kind of data: 'prompts', 'sft'."""
    folder = resources.files("rayalign.assets").joinpath(kind)
    if not folder.is_dir():
        return []
    return sorted(p.name.removesuffix(".jsonl") for p in folder.iterdir() if p.name.endswith(".jsonl"))


@dataclass(frozen=True)
class Files:
    """The files a source names, in reading order, and how to read them."""

    paths: list[str]
    filesystem: pafs.FileSystem
    names: dict[str, str]  # path -> the name error messages give it
    on_driver: bool  # a path of the driver's machine: other nodes may not have it


def resolve(source: str, kind: str) -> Files:
    """The files of `source`; a PromptDataError names what is wrong and what to give instead."""
    if source.startswith("builtin:"):
        name = source.removeprefix("builtin:")
        if name not in builtin_sets(kind):
            raise PromptDataError(f"no built-in {kind} set {name!r}; built-in sets: {builtin_sets(kind)}")
        path = str(resources.files("rayalign.assets").joinpath(kind, f"{name}.jsonl"))
        return Files([path], pafs.LocalFileSystem(), {path: source}, on_driver=True)
    on_driver = "://" not in source
    scheme = "" if on_driver else source.split("://", 1)[0] + "://"
    try:
        filesystem, path = pafs.FileSystem.from_uri(str(Path(source).expanduser().resolve()) if on_driver else source)
        paths = (_glob(filesystem, path) if any(c in path for c in GLOB_CHARS)
                 else _expand(filesystem, path, source, kind))
    except (OSError, pa.ArrowInvalid) as exc:
        raise PromptDataError(f"cannot read {kind} source {source!r}: {exc}") from exc
    if not paths:
        raise PromptDataError(f"{kind} source {source!r} matches no {', '.join(SUFFIXES)} file")
    for p in paths:
        if not p.endswith(SUFFIXES):
            raise PromptDataError(f"{kind} file {scheme + p!r}: use a .jsonl, .json or .parquet file, a directory "
                                  "or glob of them, or a datasets save_to_disk folder")
    return Files(paths, filesystem, {p: scheme + p for p in paths}, on_driver)


def _expand(filesystem: pafs.FileSystem, path: str, source: str, kind: str) -> list[str]:
    info = filesystem.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        builtin = "".join(f", builtin:{name}" for name in builtin_sets(kind))
        raise PromptDataError(f"{kind} source {source!r} does not exist; give a .jsonl, .json or .parquet file, a "
                              "directory or glob of them, a datasets save_to_disk folder or a URI (s3://, gs://, "
                              f"file://){builtin} (docs/data.md)")
    if info.type == pafs.FileType.File:
        return [path]
    state = filesystem.get_file_info(f"{path}/state.json")
    if state.type == pafs.FileType.File:  # datasets' Dataset.save_to_disk: Arrow streams listed in state.json
        with filesystem.open_input_stream(state.path) as f:
            return [f"{path}/{d['filename']}" for d in json.load(f)["_data_files"]]
    splits = filesystem.get_file_info(f"{path}/dataset_dict.json")
    if splits.type == pafs.FileType.File:
        with filesystem.open_input_stream(splits.path) as f:
            names = json.load(f)["splits"]
        raise PromptDataError(f"{source!r} is a datasets DatasetDict with splits {names}; point at one of them, "
                              f"e.g. {source.rstrip('/')}/{names[0]}")
    listed = filesystem.get_file_info(pafs.FileSelector(path, recursive=True))
    # Like Ray Data's own listing, skip hidden and bookkeeping files (.crc, _SUCCESS).
    return sorted(i.path for i in listed if i.type == pafs.FileType.File and i.path.endswith(SUFFIXES)
                  and not any(part.startswith((".", "_")) for part in PurePosixPath(i.path[len(path):]).parts))


def _glob(filesystem: pafs.FileSystem, pattern: str) -> list[str]:
    parts = PurePosixPath(pattern).parts
    fixed = next(i for i, part in enumerate(parts) if any(c in part for c in GLOB_CHARS))
    base = str(PurePosixPath(*parts[:fixed])) if fixed else "."
    listed = filesystem.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    # Anchored at "/", a match covers the whole path: '*' stays inside one folder.
    anchored = "/" + pattern.lstrip("/")
    return sorted(i.path for i in listed
                  if i.type == pafs.FileType.File and PurePosixPath("/" + i.path.lstrip("/")).match(anchored))


def columns_of(kind: str) -> set[str]:
    """The columns a kind of data may use: what a Parquet or Arrow read keeps of each file."""
    return {c for columns in FORMATS[kind].values() for c in columns} | {"prompt_id", "split"}


class RecordFiles(FileBasedDatasource):
    """Ray Data datasource of data files as raw rows: `_where` ('FILE, line N' or 'FILE, row N')
    and `_row` (the row as JSON, parsed by read_rows)."""

    def __init__(self, files: Files, columns: set[str]):
        super().__init__(files.paths, filesystem=files.filesystem)
        self._names = files.names
        self._columns = columns
        self._on_driver = files.on_driver

    @property
    def supports_distributed_reads(self) -> bool:
        # False makes Ray Data run the read tasks on the driver's node, where the path was found.
        return not self._on_driver

    def _open_input_source(self, filesystem, path: str, **open_args):
        if path.endswith(".parquet"):
            return filesystem.open_input_file(path)  # a Parquet footer needs random access
        return super()._open_input_source(filesystem, path, **open_args)

    def _read_stream(self, f, path: str) -> Iterator[pa.Table]:
        name = self._names[path]
        rows = iter(_raw_rows(f, path, name, self._columns))
        while chunk := list(islice(rows, CHUNK_ROWS)):
            yield pa.table({"_where": [f"{name}, {where}" for where, _ in chunk], "_row": [text for _, text in chunk]})


def _raw_rows(f, path: str, name: str, columns: set[str]) -> Iterator[tuple[str, str]]:
    """('line N' or 'row N', JSON text) of each row of one file."""
    if path.endswith(".jsonl"):
        yield from _json_lines(_utf8_lines(f, name))
    elif path.endswith(".json"):
        data = f.read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _not_utf8(name, data[:exc.start].count(b"\n") + 1, data[exc.start]) from None
        if not text.lstrip().startswith("["):  # datasets' to_json writes JSON Lines, even into .json
            yield from _json_lines(io.StringIO(text))
            return
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PromptDataError(f"{name}: not valid JSON ({exc.msg}, line {exc.lineno}); a .json file holds a "
                                  "JSON array of rows or one row per line") from None
        yield from ((f"row {i}", json.dumps(item)) for i, item in enumerate(items))
    else:
        yield from _table_rows(_batches(f, path, name, columns))


def _utf8_lines(f, name: str) -> Iterator[str]:
    # Undecodable bytes survive the decoding as lone surrogates, so the error can name its line.
    for n, line in enumerate(io.TextIOWrapper(f, encoding="utf-8", errors="surrogateescape"), 1):
        try:
            line.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _not_utf8(name, n, ord(line[exc.start]) - 0xDC00) from None
        yield line


def _not_utf8(name: str, line: int, byte: int) -> PromptDataError:
    return PromptDataError(f"{name}, line {line}: not UTF-8 text (byte {byte:#04x}); save the file as UTF-8")


def _json_lines(lines) -> Iterator[tuple[str, str]]:
    for n, line in enumerate(lines, 1):
        if line.strip():
            yield f"line {n}", line


def _batches(f, path: str, name: str, columns: set[str]) -> Iterator[pa.RecordBatch]:
    """The record batches of a Parquet file or an Arrow stream, with only the kind's columns (all of
    them when it has none of those, so that the error lists what it has)."""
    try:
        if path.endswith(".parquet"):
            parquet = pq.ParquetFile(f)
            names = [c for c in parquet.schema_arrow.names if c in columns] or parquet.schema_arrow.names
            yield from parquet.iter_batches(batch_size=CHUNK_ROWS, columns=names)
        else:
            stream = pa.ipc.open_stream(f)
            names = [c for c in stream.schema.names if c in columns] or stream.schema.names
            yield from (batch.select(names) for batch in stream)
    except (pa.ArrowInvalid, OSError) as exc:
        what = "Parquet file" if path.endswith(".parquet") else "Arrow stream (as datasets' save_to_disk writes)"
        raise PromptDataError(f"{name} is not a readable {what}: {exc}") from None


def _table_rows(batches: Iterator[pa.RecordBatch]) -> Iterator[tuple[str, str]]:
    i = 0
    for batch in batches:
        for row in batch.to_pylist():
            yield f"row {i}", json.dumps(row, default=str)  # default: dates and the like, unused here
            i += 1


def read_rows(source: str, kind: str, to_row: Callable[[dict[str, Any]], dict[str, Any]],
              schema: pa.Schema) -> ray.data.Dataset:
    """The rows of `source` as `to_row` turns each raw row into one of `schema`, in the source's
    order. A row that is not a JSON object or that `to_row` refuses (RowError) fails the read with
    a PromptDataError naming its file and line: execute the dataset under errors.data_errors() to
    get that error back whole."""
    datasource = RecordFiles(resolve(source, kind), columns_of(kind))
    ds = ray.data.read_datasource(datasource)
    # File order whatever the parallelism: prompt caps take the first rows of each split, and
    # SFT's batch order is drawn over the rows as they come.
    ds.context.execution_options.preserve_order = True
    ds.context.raise_original_map_exception = True  # a PromptDataError, not Ray Data's UserCodeException
    return ds.map_batches(_to_rows, fn_kwargs={"kind": kind, "to_row": to_row, "schema": schema},
                          batch_format="pyarrow", batch_size=None)


def _to_rows(batch: pa.Table, kind: str, to_row: Callable, schema: pa.Schema) -> pa.Table:
    out = []
    for where, text in zip(batch["_where"].to_pylist(), batch["_row"].to_pylist()):
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PromptDataError(f"{where}: not valid JSON ({exc.msg}); each line must be {EXAMPLES[kind]}") from None
        if not isinstance(row, dict):
            raise PromptDataError(f"{where}: expected a JSON object, got {type(row).__name__}")
        try:
            out.append(to_row(row))
        except RowError as exc:
            raise PromptDataError(f"{where}: {exc}") from None
    return pa.Table.from_pylist(out, schema=schema)
