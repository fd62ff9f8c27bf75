"""Messages the libraries print that a user cannot act on: silenced once for the commands (`quiet_libraries`), or
filtered around the one call that causes them (`without_log_records`), each with the reason where it is used."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator


def quiet_libraries() -> None:
    """For the commands (cadft as a library leaves the libraries as they are)."""
    # bitsandbytes tries, on import, to fetch a faster 4-bit CPU kernel from a hub repository it does not trust, and
    # warns when it cannot; it then uses its own kernel, which cadft has always used.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    # MLflow's INFO lines (creating a new store's tables) and its per-file progress bars when it copies artifacts.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


class _DropRecords(logging.Filter):
    def __init__(self, drop: Callable[[str], bool]):
        super().__init__()
        self.drop = drop

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.drop(record.getMessage())


@contextlib.contextmanager
def without_log_records(logger_name: str, drop: Callable[[str], bool]) -> Iterator[None]:
    """Within the block, the records of `logger_name` whose message `drop` says to drop are not emitted."""
    logger, quiet = logging.getLogger(logger_name), _DropRecords(drop)
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)
