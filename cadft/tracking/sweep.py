"""A Hydra sweep (`cadft train -m`) as one MLflow parent run with a child run per job.

`SweepTracking` is registered in conf/config.yaml (hydra.callbacks), so every multirun gets it: the templates in
multirun_templates/ and ad-hoc sweeps alike. At the start it opens the parent run (named after the sweep config, tagged
with its overrides) and writes its id and the swept keys to a file in the sweep dir (mlflow_sweep.json). Each job,
in its own process for every launcher (basic, joblib, submitit local and SLURM), reads that file back (`sweep_job`)
and hands it to its run, which becomes a child tagged `cadft.swept.<key>=<value>`. At the end the leaderboard
(cadft.tracking.leaderboard) is printed and logged to the parent, and the parent is closed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from cadft.config.validate import validate_group
from cadft.layout import SWEEP_RECORD
from cadft.tracking import leaderboard, learning_curve, names
from cadft.tracking.session import git_commit
from cadft.tracking.sqlite_store import client_for
from cadft.tracking.store import experiment_for, tracking_uri
from cadft.train.distributed import is_main_process

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepJob:
    """A job's place in its sweep: the parent run, the job's tags (its swept values and number) and its run name."""

    parent_run_id: str
    tags: dict[str, str]
    run_name: str | None
    tracking_uri: str | None = None  # the parent run's store

    def stopped(self) -> None:
        """The sweep was stopped (Ctrl-C, SIGTERM) in this job: its parent run ends KILLED (Hydra never reaches
        on_multirun_end)."""
        if self.tracking_uri:
            client_for(self.tracking_uri).set_terminated(self.parent_run_id, "KILLED")


def swept_keys(config: DictConfig) -> list[str]:
    """The keys a sweep varies: its sweeper params, then command-line overrides, the later one winning as in
    Hydra's BasicSweeper (`model=lora` on the command line fixes a template's `model: qlora,lora,full`)."""
    params = [f"{key}={value}" for key, value in (config.hydra.sweeper.get("params") or {}).items()]
    overrides = OverridesParser.create().parse_overrides(params + list(config.hydra.overrides.task))
    final = {override.key_or_group: override.is_sweep_override() for override in overrides}
    return [key for key, swept in final.items() if swept]


def swept_values(task_overrides: list[str], keys: list[str]) -> dict[str, str]:
    """A job's values of the swept keys as text: `zero='2'` -> "2", `model.learning_rate=1e-4` -> "0.0001"."""
    overrides = OverridesParser.create().parse_overrides(list(task_overrides))
    values = {
        o.key_or_group: o.value() if isinstance(o.value(), str) else o.get_value_element_as_str() for o in overrides
    }
    return {key: values[key] for key in keys if key in values}


def sweep_job(hydra_config) -> SweepJob | None:
    """This job's place in its sweep (from the job's Hydra config), or None when the sweep is not tracked."""
    if not is_main_process():
        return None
    path = Path(str(hydra_config.sweep.dir)) / SWEEP_RECORD
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    values = swept_values(list(hydra_config.overrides.task), record["swept"])
    tags = {names.SWEPT_TAG + key: value for key, value in values.items()} | {
        names.SWEEP_TAG + "job": str(hydra_config.job.num)
    }
    name = " ".join(f"{key}={value}" for key, value in values.items()) or None
    return SweepJob(record["parent_run_id"], tags, name, record.get("tracking_uri"))


class SweepTracking(Callback):
    # Under torchrun every rank runs the sweep (each job's ranks in step); only rank 0 talks to MLflow.
    def on_multirun_start(self, config: DictConfig, config_name: str | None = None, **kwargs: Any) -> None:
        tracking, paths = validate_group(config, "tracking"), validate_group(config, "paths")
        if not tracking.enabled or not is_main_process():
            return
        sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        uri = tracking_uri(tracking, paths)
        keys = swept_keys(config)
        overrides = list(config.hydra.overrides.task)
        parent = client_for(uri).create_run(
            experiment_for(tracking, paths),
            run_name=f"{config_name}-{sweep_dir.name}",
            tags={
                names.KIND_TAG: names.KIND_SWEEP,
                "task": str(config.task.name),
                names.SWEEP_TAG + "config": str(config_name),
                names.SWEEP_TAG + "swept": ",".join(keys),
                names.SWEEP_TAG + "overrides": " ".join(overrides),
                names.SWEEP_TAG + "params": json.dumps(_sweeper_params(config)),
                names.SWEEP_TAG + "dir": str(sweep_dir),
                "git_commit": git_commit(),
            },
        )
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / SWEEP_RECORD).write_text(
            json.dumps(
                {
                    "parent_run_id": parent.info.run_id,
                    "tracking_uri": uri,
                    "swept": keys,
                }
            )
            + "\n"
        )
        log.info(
            "sweep %s: MLflow parent run %s, sweeping %s", config_name, parent.info.run_id, ", ".join(keys) or "nothing"
        )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        path = Path(str(config.hydra.sweep.dir)) / SWEEP_RECORD
        if not is_main_process() or not path.is_file():
            return
        record = json.loads(path.read_text())
        client = client_for(record["tracking_uri"])
        parent_id = record["parent_run_id"]
        sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        client.log_artifact(parent_id, str(sweep_dir / "multirun.yaml"), "config")  # written by the sweeper
        title = f"sweep {client.get_run(parent_id).info.run_name}"
        board = leaderboard.sweep_leaderboard(client, parent_id)
        leaderboard.print_leaderboard(board, title=f"{title} (MLflow parent run {parent_id})")
        leaderboard.publish(board, client, parent_id, sweep_dir, title=title)
        learning_curve.publish(
            leaderboard.sweep_runs(client, parent_id), client, parent_id, sweep_dir, title, leaderboard.ARTIFACT_DIR
        )
        client.set_terminated(parent_id, "FINISHED")


def _sweeper_params(config: DictConfig) -> dict:
    """The template's hydra.sweeper.params; none when the sweep is on the command line alone (`-m seed=0,1`)."""
    params = config.hydra.sweeper.get("params")
    return OmegaConf.to_container(params) if params is not None else {}
