"""Progress bars that also report in a log: on a terminal tqdm redraws its bar; in a file or a cluster job's output
(stderr not a terminal) it writes one line about every 30 s with the rate and the time left."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

LOG_INTERVAL_S = 30


def progress(iterable=None, **kwargs) -> tqdm:
    """tqdm over `iterable` (or with total=...), never silent: a line per LOG_INTERVAL_S when not on a terminal."""
    interactive = sys.stderr.isatty()
    return tqdm(iterable, mininterval=0.1 if interactive else LOG_INTERVAL_S, dynamic_ncols=interactive, **kwargs)
