"""TrainerCallbacks the fault tests (tests/tracking/test_session.py) load into cadft train through tests/probed_cli.py
(CADFT_TEST_CALLBACKS): at the end of training step CADFT_FAULT_STEP (default 2) something goes wrong.

- KillServer: SIGKILLs the process group CADFT_SERVER_PID (the MLflow tracking server the run logs to);
- WaitForSignal: writes the file CADFT_FAULT_MARKER and waits up to 120 s for the test to signal this process;
- Fail: raises RuntimeError.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from transformers import TrainerCallback


def _at_fault_step(state) -> bool:
    return state.global_step == int(os.environ.get("CADFT_FAULT_STEP", "2"))


class KillServer(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if _at_fault_step(state):
            os.killpg(int(os.environ["CADFT_SERVER_PID"]), signal.SIGKILL)


class WaitForSignal(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if _at_fault_step(state):
            Path(os.environ["CADFT_FAULT_MARKER"]).write_text(str(os.getpid()))
            time.sleep(120)


class Fail(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if _at_fault_step(state):
            raise RuntimeError(f"a fault injected at step {state.global_step}")
