"""What a person sees while `rayalign run` works: rayalign's own lines (a line per stage, the
summary, errors) on the console, and everything libraries print — Ray and what its workers
forward to the driver, vLLM, DeepSpeed, MLflow, Python warnings — in the run directory's run.log.

The redirection is of the process's file descriptors 1 and 2, not of sys.stdout: C++ code (Ray's
raylet, vLLM's engine) and the processes the driver starts write to them directly, and inherit
them. What goes through sys.stdout and sys.stderr (Python's prints, and every line Ray forwards
from its workers) has its secrets redacted on the way (rayalign.redaction); bytes that C code
writes to the descriptors do not pass through Python and are not.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rayalign.redaction import redact_secrets

LOG_FILE = "run.log"
PACKAGE_DIR = str(Path(__file__).resolve().parent)


class Console:
    """rayalign's lines: say(line) prints a line (and records it in the log, if any); status(line)
    redraws the one live line under them (a stage's progress bar), on a terminal only."""

    def __init__(self, stream, log=None, live: bool = True) -> None:
        self.stream, self.log = stream, log
        self.live = live and _is_terminal(stream)
        self.showing = False
        self.lock = threading.Lock()  # the progress thread draws while the driver says

    def say(self, line: str) -> None:
        with self.lock:
            self._draw("")
            self.stream.write(line + "\n")
            self.stream.flush()
            if self.log is not None:
                self.log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} rayalign: {line}\n".encode())

    def status(self, line: str) -> None:
        """Replace the live line with `line` ('' clears it), cut to the terminal's width."""
        with self.lock:
            self._draw(line)

    def _draw(self, line: str) -> None:
        if not self.live or (not line and not self.showing):
            return
        try:
            width = os.get_terminal_size(self.stream.fileno()).columns or 80  # 0: a terminal that never said
        except OSError:
            width = 80
        self.stream.write("\r\x1b[2K" + line[:width - 1])  # erase the line, then draw it
        self.stream.flush()
        self.showing = bool(line)


class RedactingStream:
    """A text stream that writes through to `stream` with secrets redacted (redact_secrets): the
    driver prints what Ray's workers forward, which rayalign's log redaction never sees."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(redact_secrets(text))
        return len(text)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


@contextmanager
def quiet_console(log_file: Path, verbose: bool = False) -> Iterator[Console]:
    """Within the block, library output goes to `log_file` (appended); yields the Console whose
    say(line) prints a line on the console and records it in the log. With `verbose`, nothing is
    redirected: library output stays on the console as well, and there is no live line (library
    output would tear it). An exception leaving the block is recorded in the log with its
    traceback and reaches the console as usual. After a block that succeeds, the process's output
    keeps going to the log, redacted: what still comes (Ray forwarding a worker's last lines, its
    shutdown at exit) is library output too, so call it last."""
    if verbose:
        yield Console(sys.stdout, live=False)
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    log = open(log_file, "ab", buffering=0)
    # The console is the original fd 1, unless sys.stdout is not fd 1 at all (a notebook, a test's capture).
    owned = _writes_to_fd(sys.stdout, 1)
    stream = os.fdopen(os.dup(saved[0]), "w", buffering=1) if owned else sys.stdout
    console = Console(stream, log)
    say = console.say

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
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingStream(sys.stdout), RedactingStream(sys.stderr)
    try:
        yield console
    except BaseException:
        console.status("")
        log.write(redact_secrets(traceback.format_exc()).encode())
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = streams
        os.dup2(saved[0], 1)  # the error reaches the console
        os.dup2(saved[1], 2)
        raise
    finally:
        warnings.showwarning = library_warning
        for fd in saved:
            os.close(fd)
        if owned:
            stream.close()
        log.close()  # fds 1 and 2, after a success, still point at the log file


def _writes_to_fd(stream, fd: int) -> bool:
    try:
        return stream.fileno() == fd
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return False


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, OSError, ValueError):
        return False
