"""The error of bad user data, and getting it back whole from the Ray task that raised it."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager


class PromptDataError(ValueError):
    """A data file (prompts, demonstrations, preferences) that is missing or malformed."""

    def __init__(self, message: str):
        super().__init__(message)
        # Ray Data appends its retry advice to args[0]; the attribute keeps the message as written.
        self.message = message


class _HideDataErrors(logging.Filter):
    """Drops Ray Data's console report of a PromptDataError: a worker traceback and a note that
    calls it an internal Ray error, while the error itself names the file, the line and the fix."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else sys.exc_info()[1]
        return not isinstance(exc, PromptDataError)


@contextmanager
def data_errors() -> Iterator[None]:
    """Run Ray Data work that reads user data: a PromptDataError raised in a task comes back as
    itself, with its own message (sources.read_rows makes Ray Data raise a map function's own
    error, not its UserCodeException wrapper); Ray Data's log file still records it."""
    console = [h for h in logging.getLogger("ray.data").handlers if not isinstance(h, logging.FileHandler)]
    hide = _HideDataErrors()
    for handler in console:
        handler.addFilter(hide)
    try:
        yield
    except PromptDataError as exc:
        raise PromptDataError(getattr(exc, "cause", exc).message) from None
    finally:
        for handler in console:
            handler.removeFilter(hide)
