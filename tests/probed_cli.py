"""`python tests/probed_cli.py ARGS...`: `cadft train ARGS` with test probes (TrainerCallbacks) added to its
trainer, named in CADFT_TEST_CALLBACKS as "module:Class,...". The multi-process tests (tests/train/test_zero.py,
through torchrun and the deepspeed launcher) and the fault tests (tests/tracking/test_session.py) run the real command
this way, so cadft itself has no test hook."""

import importlib
import os
import sys
from pathlib import Path

sys.path.insert(
    0, str(Path(__file__).resolve().parent.parent)
)  # the repository root: tests.rank_probe, tests.fault_probe

from cadft.cli.train import main
from cadft.train.trainer import CadftTrainer

CALLBACKS_ENV = "CADFT_TEST_CALLBACKS"


def _probes() -> list:
    specs = [spec.strip() for spec in os.environ.get(CALLBACKS_ENV, "").split(",") if spec.strip()]
    return [
        getattr(importlib.import_module(module), name)() for module, _, name in (spec.partition(":") for spec in specs)
    ]


def _with_probes(init):
    def wrapped(self, *args, callbacks=None, **kwargs):
        init(self, *args, callbacks=[*(callbacks or []), *_probes()], **kwargs)

    return wrapped


CadftTrainer.__init__ = _with_probes(CadftTrainer.__init__)

if __name__ == "__main__":
    main()
