"""`python tests/phase_probe.py COMMAND ARGS...`: `cadft COMMAND ARGS` with one of its functions made to wait for a
signal, so that a test can stop the command in that phase (scoring, logging, ...). The stop tests
(tests/cli/test_stops.py) run the real commands this way, so cadft itself has no test hook.

CADFT_PROBE_WAIT="module:function" (e.g. "cadft.eval.run:score_texts", "cadft.tracking.session:log_artifacts") is
replaced, where that module holds it, by a wrapper that, the first time it is called, writes the file
CADFT_PROBE_MARKER (the process id) and waits up to 120 s for the test's signal; the real function runs if none came.
"""

import importlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

WAIT_ENV, MARKER_ENV = "CADFT_PROBE_WAIT", "CADFT_PROBE_MARKER"


def _waiting(function):
    def wait_then_call(*args, **kwargs):
        marker = Path(os.environ[MARKER_ENV])
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            time.sleep(120)
        return function(*args, **kwargs)

    return wait_then_call


if os.environ.get(WAIT_ENV):
    module_name, _, name = os.environ[WAIT_ENV].partition(":")
    module = importlib.import_module(module_name)
    setattr(module, name, _waiting(getattr(module, name)))

if __name__ == "__main__":
    from cadft.cli import main

    main()
