"""What a person sees while `rayalign run` works: rayalign's own lines (a line per stage, the
summary, errors) on the console, and everything libraries print — Ray and what its workers
forward to the driver, vLLM, DeepSpeed, MLflow, Python warnings — in the run directory's run.log.

The redirection is of the process's file descriptors 1 and 2, not of sys.stdout: C++ code (Ray's
raylet, vLLM's engine) and the processes the driver starts write to them directly, and inherit
them.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

LOG_FILE = "run.log"
PACKAGE_DIR = str(Path(__file__).resolve().parent)


@contextmanager
def quiet_console(log_file: Path, verbose: bool = False) -> Iterator[Callable[[str], None]]:
    """Within the block, library output goes to `log_file` (appended); yields say(line), which
    prints a line on the console and records it in the log. With `verbose`, nothing is
    redirected: library output stays on the console as well. An exception leaving the block
    is recorded in the log with its traceback and reaches the console as usual. After a block
    that succeeds, the process's output keeps going to the log: what still comes (Ray forwarding
    a worker's last lines, its shutdown at exit) is library output too, so call it last."""
    if verbose:
        yield lambda line: print(line, flush=True)
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    log = open(log_file, "ab", buffering=0)
    # The console is the original fd 1, unless sys.stdout is not fd 1 at all (a notebook, a test's capture).
    console = os.fdopen(os.dup(saved[0]), "w", buffering=1) if _writes_to_fd(sys.stdout, 1) else sys.stdout

    def say(line: str) -> None:
        console.write(line + "\n")
        log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} rayalign: {line}\n".encode())

    library_warning = warnings.showwarning

    def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
        # rayalign's own warnings are for the person at the console; the libraries' go to the log.
        if str(filename).startswith(PACKAGE_DIR):
            say(f"rayalign: warning: {message}")
        else:
            library_warning(message, category, filename, lineno, file, line)

    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    warnings.showwarning = show_warning
    try:
        yield say
    except BaseException:
        log.write(traceback.format_exc().encode())
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)  # the error reaches the console
        os.dup2(saved[1], 2)
        raise
    finally:
        warnings.showwarning = library_warning
        for fd in saved:
            os.close(fd)
        if console is not sys.stdout:
            console.close()
        log.close()  # fds 1 and 2, after a success, still point at the log file


def _writes_to_fd(stream, fd: int) -> bool:
    try:
        return stream.fileno() == fd
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return False
