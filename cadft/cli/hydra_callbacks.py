"""A Hydra callback that checks the output folders before Hydra creates the run (or sweep) dir there."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from cadft.cli.common import prog_name
from cadft.errors import CadftError
from cadft.files import check_writable


class CheckOutputWritable(Callback):
    """Before Hydra creates the run (or sweep) dir: a folder that cannot be written is `prog: error: ...` and
    exit 2, where Hydra would print its own error and exit 1. Registered in conf/config.yaml, before the callbacks
    that write there."""

    def on_run_start(self, config, **kwargs) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config, **kwargs) -> None:
        self._check(config, "hydra.sweep.dir")

    @staticmethod
    def _check(config, dir_key: str) -> None:
        try:
            output_dir = OmegaConf.select(config, "paths.output_dir", default=None)
            if output_dir is not None:
                check_writable(Path(output_dir), "paths.output_dir", create=False)
            check_writable(Path(str(OmegaConf.select(config, dir_key))), dir_key, create=False)
        except CadftError as err:
            print(f"{prog_name(str(config.hydra.job.name))}: error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
