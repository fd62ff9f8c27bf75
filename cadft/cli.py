"""What every cadft command line shares: user errors become one clear message and exit status 2."""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

from cadft.errors import CadftError

# The shipped config tree (top-level conf/ of the clone cadft is installed from, editable). Absolute, so the
# console scripts work from any working directory.
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def exit_on_user_error(prog: str):
    """Wrap a CLI body so a CadftError prints `prog: error: message` (no traceback) and exits 2."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except CadftError as err:
                logging.getLogger(prog).debug("user error", exc_info=True)
                print(f"{prog}: error: {err}", file=sys.stderr)
                raise SystemExit(2) from None

        return wrapper

    return decorate
