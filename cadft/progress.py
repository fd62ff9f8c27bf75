"""Progress bars that also report in a log: on a terminal tqdm redraws its bar; in a file or a cluster job's output
(stderr not a terminal) a step shorter than 30 s prints nothing, a longer one a line about every 30 s with the rate
and the time left."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm
from tqdm.std import tqdm as std_tqdm

LOG_INTERVAL_S = 30


class _LogProgress(tqdm):
    """tqdm that stays silent for its first `delay` seconds, even when a postfix change asks for a redraw (a short step
    must not add lines to an error's one-line output)."""

    def refresh(self, *args, **kwargs):
        if self._time() - self.start_t < self.delay:
            return None
        return super().refresh(*args, **kwargs)


def progress(iterable=None, **kwargs) -> tqdm:
    """tqdm over `iterable` (or with total=...), never silent for long: a line per LOG_INTERVAL_S when not on a
    terminal."""
    if sys.stderr.isatty():
        return tqdm(iterable, **kwargs)
    return _LogProgress(iterable, mininterval=LOG_INTERVAL_S, delay=LOG_INTERVAL_S, **kwargs)


def close_open_bars() -> None:
    """Close every bar still open (transformers' training bar included, left open by a stop signal), so its last
    redraw comes before a command's one-line stop message rather than after it, when the bar is collected at exit."""
    bars = {*getattr(std_tqdm, "_instances", ()), *getattr(tqdm, "_instances", ())}
    for bar in bars:
        bar.close()
