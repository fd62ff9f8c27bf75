"""`python tests/phase_probe.py COMMAND ARGS...`: `cadft COMMAND ARGS` with one of its functions made to wait for a
signal, or to fail as a full disk does, so that a test can stop the command in that phase (scoring, logging, ...) or
fill its disk at one writer. The stop and disk tests (tests/cli/test_faults.py) run the
real commands this way, so cadft itself has no test hook.

- CADFT_PROBE_WAIT="module:function" (e.g. "cadft.eval.run:score_records", "cadft.tracking.session:log_artifacts") is
  replaced, where that module holds it, by a wrapper that, the first time it is called, writes the file
  CADFT_PROBE_MARKER (the process id) and waits up to 120 s for the test's signal; the real function runs if none came.
- CADFT_PROBE_FAIL="module:attribute" (a function, or a class's method: "polars:DataFrame.write_csv") raises
  OSError(ENOSPC) instead, when its arguments mention CADFT_PROBE_FAIL_IF (when set; e.g. "/model/": the final
  model's files, not a checkpoint's).
"""

import errno
import importlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

WAIT_ENV, MARKER_ENV = "CADFT_PROBE_WAIT", "CADFT_PROBE_MARKER"
FAIL_ENV, FAIL_IF_ENV = "CADFT_PROBE_FAIL", "CADFT_PROBE_FAIL_IF"


def _waiting(function):
    def wait_then_call(*args, **kwargs):
        marker = Path(os.environ[MARKER_ENV])
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            time.sleep(120)
        return function(*args, **kwargs)

    return wait_then_call


def _full_disk(function):
    def fail(*args, **kwargs):
        if os.environ.get(FAIL_IF_ENV, "") in repr((args, kwargs)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return function(*args, **kwargs)

    return fail


def _replace(spec: str, wrap) -> None:
    module_name, _, path = spec.partition(":")
    owner = importlib.import_module(module_name)
    *classes, name = path.split(".")
    for cls in classes:
        owner = getattr(owner, cls)
    setattr(owner, name, wrap(getattr(owner, name)))


if os.environ.get(WAIT_ENV):
    _replace(os.environ[WAIT_ENV], _waiting)
if os.environ.get(FAIL_ENV):
    _replace(os.environ[FAIL_ENV], _full_disk)

if __name__ == "__main__":
    from cadft.cli import main

    main()
