"""The command line beyond bad input (tests/test_bad_input.py): presets, show, runs, a busy run directory."""

import pytest

from rayalign.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    return code, capsys.readouterr().err


def test_presets_lists_default(capsys):
    assert main(["presets"]) == 0
    assert capsys.readouterr().out.startswith("default")


@pytest.mark.parametrize("address", ["ray://127.0.0.1:1", "127.0.0.1:1"])
def test_check_reachable_fails_fast(address):
    from rayalign.pipeline.runner import RayConnectError, check_reachable

    with pytest.raises(RayConnectError):
        check_reachable(address, timeout_s=2)


def test_show_and_runs_on_what_is_not_a_run(capsys, tmp_path):
    code, err = run_cli(capsys, "show", str(tmp_path))
    assert code == 2 and "not a rayalign run directory (no config.yaml)" in err and "Traceback" not in err
    assert main(["runs", str(tmp_path)]) == 0 and "no runs under" in capsys.readouterr().out


def test_a_run_without_a_current_summary_is_incomplete(capsys, tmp_path):
    from rayalign.config import load_config
    from rayalign.run_dirs import show

    (tmp_path / "r" / "prompts").mkdir(parents=True)
    (tmp_path / "r" / "prompts" / "_manifest.json").write_text("{}")
    (tmp_path / "r" / "config.yaml").write_text(f"name: {load_config('default').name}\n")
    assert "stages with outputs: prompts" in show(tmp_path / "r") and "incomplete" in show(tmp_path / "r")
    assert main(["runs", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[2].split()[:2] == ["r", "incomplete"]


def test_a_second_run_on_a_busy_run_directory_refuses(capsys, tmp_path, tiny_model):
    import os

    from rayalign.pipeline.store import exclusive

    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "sample").mkdir()  # what the first run has produced so far
    with exclusive(run_dir):  # the first run, still working
        code, err = run_cli(capsys, "run", "default", f"model.policy={tiny_model}", "--run-dir", str(run_dir))
    assert code == 1 and f"is in use by another rayalign run (pid {os.getpid()})" in err and "--run-dir" in err
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock", "run.log", "sample"]  # nothing else written
    with exclusive(run_dir):  # free again once the first run ends
        pass
