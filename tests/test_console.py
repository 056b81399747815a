"""The quiet console: rayalign's lines on the console, library output (Python and C level) in
run.log, errors in full on both. In a child process, since it redirects file descriptors.
tests/test_pipeline_e2e.py checks a whole `rayalign run` in a real terminal."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import os, sys, warnings
    from pathlib import Path
    from rayalign.console import PACKAGE_DIR, quiet_console

    with quiet_console(Path(sys.argv[1]), verbose=sys.argv[2] == "verbose") as console:
        say = console.say
        say("[1/2] sample: running")
        print("a library prints")
        os.write(2, b"C code writes to fd 2\\n")
        warnings.warn_explicit("a library warns", UserWarning, "/site-packages/lib.py", 1)
        warnings.warn_explicit("rayalign warns", UserWarning, PACKAGE_DIR + "/config/loader.py", 1)
        if sys.argv[2] == "succeeds":
            say("summary")
        else:
            raise RuntimeError("the stage failed")
    print("a worker's last line, forwarded late")
""")


def run(tmp_path: Path, mode: str) -> tuple[subprocess.CompletedProcess, str]:
    log = tmp_path / "run.log"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(log), mode], capture_output=True, text=True,
                          env={"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PATH": "/usr/bin:/bin"})
    return done, log.read_text() if log.exists() else ""


def test_library_output_goes_to_run_log_and_errors_reach_the_console(tmp_path):
    done, log = run(tmp_path, "quiet")
    assert done.returncode == 1
    console = done.stdout + done.stderr
    assert "[1/2] sample: running" in done.stdout and "rayalign: warning: rayalign warns" in done.stdout
    for library in ("a library prints", "C code writes to fd 2", "a library warns"):
        assert library not in console and library in log
    assert "RuntimeError: the stage failed" in done.stderr and "RuntimeError: the stage failed" in log
    assert "rayalign: [1/2] sample: running" in log


def test_what_comes_after_a_successful_run_goes_to_run_log(tmp_path):
    done, log = run(tmp_path, "succeeds")
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "summary"
    assert "a worker's last line, forwarded late" in log and "forwarded late" not in done.stdout + done.stderr


def test_verbose_shows_everything_on_the_console(tmp_path):
    done, log = run(tmp_path, "verbose")
    console = done.stdout + done.stderr
    for line in ("[1/2] sample: running", "a library prints", "C code writes to fd 2", "a library warns",
                 "RuntimeError: the stage failed"):
        assert line in console
    assert log == ""
