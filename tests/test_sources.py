"""Where user data comes from (rayalign.data.sources): every source, read by real Ray Data reads
of files written here, gives the same rows; where a row is; what a source that cannot be read says."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rayalign.data.errors import PromptDataError, data_errors
from rayalign.data.formats import prompt_record
from rayalign.data.ray_io import to_table
from rayalign.data.sources import RecordFiles, columns_of, read_rows, resolve

PROMPT_ROWS = pa.schema([("prompt_id", pa.string()), ("prompt", pa.string())])


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def rows_of(source):
    """The prompt rows of `source`, as the readers get them."""
    with data_errors():
        return to_table(read_rows(source, "prompts", prompt_record, PROMPT_ROWS)).to_pylist()


def save_to_disk(table, folder):
    """`table` as HF datasets' Dataset.save_to_disk writes it."""
    try:
        import datasets
    except ImportError:
        # datasets is not installed here: write the layout its save_to_disk writes, one Arrow
        # stream per shard, listed in state.json.
        folder.mkdir()
        with pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink:
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
        (folder / "state.json").write_text(json.dumps({
            "_data_files": [{"filename": "data-00000-of-00001.arrow"}], "_fingerprint": "0", "_format_columns": None,
            "_format_kwargs": {}, "_format_type": None, "_output_all_columns": False, "_split": None}))
        (folder / "dataset_info.json").write_text(json.dumps({"citation": "", "description": "", "features": {}}))
    else:
        datasets.Dataset(table).save_to_disk(str(folder))


def test_a_source_that_cannot_be_read_says_what_to_give(tmp_path):
    with pytest.raises(PromptDataError, match="does not exist; give a .jsonl, .json or .parquet file, a "
                                              "directory or glob of them.*builtin:movie_reviews"):
        resolve(str(tmp_path / "nope.jsonl"), "prompts")
    with pytest.raises(PromptDataError, match="matches no .jsonl, .json, .parquet, .arrow file"):
        resolve(str(tmp_path / "*.parquet"), "prompts")
    (tmp_path / "p.csv").write_text("prompt\nx\n")
    with pytest.raises(PromptDataError, match="p.csv'?: use a .jsonl, .json or .parquet file"):
        resolve(str(tmp_path / "p.csv"), "prompts")
    with pytest.raises(PromptDataError, match=r"no built-in prompts set 'nope'; built-in sets: \['movie_reviews'\]"):
        resolve("builtin:nope", "prompts")
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "dataset_dict.json").write_text('{"splits": ["train", "test"]}')
    with pytest.raises(PromptDataError, match=r"DatasetDict with splits \['train', 'test'\]; point at one of "
                                              f"them, e.g. {saved}/train"):
        resolve(str(saved), "prompts")


def test_every_source_reads_the_same_rows(ray_local, tmp_path):
    rows = [{"prompt_id": "a", "prompt": "The sky is"}, {"prompt_id": None, "prompt": "Grass is"},
            {"prompt_id": "c", "prompt": "Snow is"}]
    table = pa.Table.from_pylist(rows)
    sources = {"jsonl": write_lines(tmp_path / "p.jsonl", [json.dumps(r) for r in rows]),
               "json array": str(tmp_path / "array.json"),
               "json lines in .json": write_lines(tmp_path / "lines.json", [json.dumps(r) for r in rows]),
               "parquet": str(tmp_path / "p.parquet"), "directory": str(tmp_path / "parts"),
               "glob": str(tmp_path / "parts" / "part-*.parquet"), "save_to_disk": str(tmp_path / "saved"),
               "file:// URI": f"file://{tmp_path}/p.jsonl"}
    (tmp_path / "array.json").write_text(json.dumps(rows, indent=1))
    pq.write_table(table, tmp_path / "p.parquet")
    (tmp_path / "parts").mkdir()
    pq.write_table(table.slice(0, 2), tmp_path / "parts" / "part-0.parquet")
    pq.write_table(table.slice(2), tmp_path / "parts" / "part-1.parquet")
    (tmp_path / "parts" / "_SUCCESS").write_text("")  # bookkeeping files are skipped
    (tmp_path / "parts" / "notes.txt").write_text("")  # and files of other kinds
    save_to_disk(table, tmp_path / "saved")
    expected = [prompt_record(row) for row in rows]
    for name, source in sources.items():
        assert rows_of(source) == expected, name


def test_rows_name_their_file_and_line(ray_local, tmp_path):
    (tmp_path / "array.json").write_text(json.dumps([{"prompt": "ok"}, {"prompt": ""}]))
    with pytest.raises(PromptDataError, match=r"array.json, row 1: empty prompt"):
        rows_of(str(tmp_path / "array.json"))
    (tmp_path / "broken.json").write_text('[{"prompt": "ok"},\n {"prompt": }]')
    with pytest.raises(PromptDataError, match=r"broken.json: not valid JSON \(Expecting value, line 2\)"):
        rows_of(str(tmp_path / "broken.json"))
    pq.write_table(pa.table({"prompt": ["ok", "  "]}), tmp_path / "p.parquet")
    with pytest.raises(PromptDataError, match=r"p.parquet, row 1: empty prompt"):
        rows_of(str(tmp_path / "p.parquet"))
    with pytest.raises(PromptDataError, match=r"lines.jsonl, line 2: expected a JSON object, got list"):
        rows_of(write_lines(tmp_path / "lines.jsonl", ['{"prompt": "ok"}', "[1, 2]"]))
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(PromptDataError, match="bad.parquet is not a readable Parquet file"):
        rows_of(str(tmp_path / "bad.parquet"))


def test_local_paths_are_read_on_the_driver_node(ray_local, tmp_path):
    # A plain path was found on the driver's machine: another node may lack it. A file:// URI
    # names shared storage, which any node may read.
    path = write_lines(tmp_path / "p.jsonl", ['{"prompt": "x"}'])
    assert RecordFiles(resolve(path, "prompts"), columns_of("prompts")).supports_distributed_reads is False
    assert RecordFiles(resolve("builtin:movie_reviews", "prompts"), set()).supports_distributed_reads is False
    assert RecordFiles(resolve(f"file://{path}", "prompts"), set()).supports_distributed_reads is True
