"""Hydra callbacks that refuse a run before Hydra creates its run (or sweep) dir: output folders that cannot be
written, and (train, baselines) a synthetic cohort's oracle that does not belong to the prepared data."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from cadft.cli.common import exit_on_user_error, prog_name
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


class CheckOracle(Callback):
    """Before a single run's dir is created: when the config has an oracle for its task (a synthetic cohort), the
    data is prepared (cached: the run reads it back) and a stale or mismatched oracle is refused with one line
    (cadft.eval.baselines.oracle.check_oracle), where it would otherwise fail after the whole training. A sweep's jobs
    check it inside run_training, before training. Only rank 0 checks."""

    def __init__(self, commands: list[str]):
        self.commands = list(commands)

    def on_run_start(self, config, **kwargs) -> None:
        from cadft.train.distributed import is_main_process

        command = str(config.hydra.job.name)
        if command in self.commands and is_main_process():
            exit_on_user_error(prog_name(command))(_check_oracle)(config)


def _check_oracle(config) -> None:
    from cadft.config.validate import validate, with_absolute_paths
    from cadft.eval.baselines.oracle import check_oracle, oracle_path_for

    typed = with_absolute_paths(validate(config))
    if oracle_path_for(typed) is not None:
        from cadft.data.prepare import prepare

        check_oracle(typed, prepare(typed).table())
