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


PATH_KEYS = ("paths.output_dir", "paths.prepared_dir", "paths.cache_dir", "data.path", "data.oracle_path")


def absolute_paths(cfg) -> None:
    """Resolve the config's file paths against the current directory, in place: a run's saved config then
    means the same files from anywhere (cadft-eval, a sweep job, another rank)."""
    from omegaconf import OmegaConf

    for key in PATH_KEYS:
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if value not in (None, "???"):  # unset keys stay unset: the step that needs them says so
            OmegaConf.update(cfg, key, str(Path(value).expanduser().resolve()), merge=False)


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
