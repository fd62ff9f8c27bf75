"""A Hydra sweep (`cadft-train -m`) as one MLflow parent run with a child run per job.

`SweepTracking` is registered in conf/config.yaml (hydra.callbacks), so every multirun gets it: the
templates in multirun_templates/ and ad-hoc sweeps alike. At the start it opens the parent run (named
after the sweep config, tagged with its overrides) and writes its id and the swept keys to a file in the
sweep dir; each job reads that file back in `on_job_start`, which runs in the job's own process for every
launcher (basic, joblib, submitit local and SLURM), and hands both to cadft.tracking.start_run through
environment variables: the job's run becomes a child tagged `cadft.swept.<key>=<value>`. At the end the
leaderboard (cadft.compare) is printed and logged to the parent, and the parent is closed.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from cadft import compare, learning_curve, tracking

log = logging.getLogger(__name__)
SWEEP_FILE = "mlflow_sweep.json"  # in the sweep dir: the parent run and the swept keys, for the jobs


def swept_keys(config: DictConfig) -> list[str]:
    """The keys a sweep varies: its sweeper params, then command-line overrides, the later one winning as in
    Hydra's BasicSweeper (`model=lora` on the command line fixes a template's `model: qlora,lora,full`)."""
    params = [f"{key}={value}" for key, value in (config.hydra.sweeper.get("params") or {}).items()]
    overrides = OverridesParser.create().parse_overrides(params + list(config.hydra.overrides.task))
    final = {override.key_or_group: override.is_sweep_override() for override in overrides}
    return [key for key, swept in final.items() if swept]


def swept_values(job_config: DictConfig, keys: list[str]) -> dict[str, str]:
    """A job's values of the swept keys as text: `zero='2'` -> "2", `model.learning_rate=1e-4` -> "0.0001"."""
    overrides = OverridesParser.create().parse_overrides(list(job_config.hydra.overrides.task))
    values = {o.key_or_group: o.value() if isinstance(o.value(), str) else o.get_value_element_as_str() for o in overrides}
    return {key: values[key] for key in keys if key in values}


class SweepTracking(Callback):
    # Under torchrun every rank runs the sweep (each job's ranks in step); only rank 0 talks to MLflow.
    def on_multirun_start(self, config: DictConfig, config_name: str | None = None, **kwargs: Any) -> None:
        if not config.tracking.enabled or not tracking.is_main_process():
            return
        from mlflow import MlflowClient

        sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        uri = tracking.tracking_uri(config)
        keys = swept_keys(config)
        overrides = list(config.hydra.overrides.task)
        parent = MlflowClient(uri).create_run(
            tracking.experiment_for(config),
            run_name=f"{config_name}-{sweep_dir.name}",
            tags={
                tracking.KIND_TAG: tracking.KIND_SWEEP, "task": str(config.task.name), tracking.SWEEP_TAG + "config": str(config_name),
                tracking.SWEEP_TAG + "swept": ",".join(keys), tracking.SWEEP_TAG + "overrides": " ".join(overrides),
                tracking.SWEEP_TAG + "params": json.dumps(_sweeper_params(config)),
                tracking.SWEEP_TAG + "dir": str(sweep_dir), "git_commit": tracking.git_commit(),
            },
        )
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / SWEEP_FILE).write_text(json.dumps({
            "parent_run_id": parent.info.run_id, "tracking_uri": uri, "swept": keys,
        }) + "\n")
        log.info("sweep %s: MLflow parent run %s, sweeping %s", config_name, parent.info.run_id, ", ".join(keys) or "nothing")

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN or not tracking.is_main_process():
            return
        _clear_job_environment()
        record = _sweep_record(config)
        if record is None:
            return
        values = swept_values(config, record["swept"])
        os.environ[tracking.PARENT_ENV] = record["parent_run_id"]
        os.environ[tracking.SWEEP_TAGS_ENV] = json.dumps(
            {tracking.SWEPT_TAG + key: value for key, value in values.items()} | {tracking.SWEEP_TAG + "job": str(config.hydra.job.num)})
        if values:
            os.environ[tracking.SWEEP_RUN_NAME_ENV] = " ".join(f"{key}={value}" for key, value in values.items())

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        record = _sweep_record(config) if tracking.is_main_process() else None
        if record is None:
            return
        from mlflow import MlflowClient

        _clear_job_environment()
        client = MlflowClient(record["tracking_uri"])
        parent_id = record["parent_run_id"]
        sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        client.log_artifact(parent_id, str(sweep_dir / "multirun.yaml"), "config")  # written by the sweeper
        title = f"sweep {client.get_run(parent_id).info.run_name}"
        board = compare.sweep_leaderboard(client, parent_id)
        compare.print_leaderboard(board, title=f"{title} (MLflow parent run {parent_id})")
        compare.publish(board, client, parent_id, sweep_dir, title=title)
        learning_curve.publish(compare.sweep_runs(client, parent_id), client, parent_id, sweep_dir, title, compare.ARTIFACT_DIR)
        client.set_terminated(parent_id, "FINISHED")


def _sweep_record(config: DictConfig) -> dict | None:
    path = Path(str(config.hydra.sweep.dir)) / SWEEP_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _clear_job_environment() -> None:
    """Nothing left over from an earlier sweep in this process (the basic launcher runs jobs in-process)."""
    for name in (tracking.PARENT_ENV, tracking.SWEEP_TAGS_ENV, tracking.SWEEP_RUN_NAME_ENV):
        os.environ.pop(name, None)


def _sweeper_params(config: DictConfig) -> dict:
    """The template's hydra.sweeper.params; none when the sweep is on the command line alone (`-m seed=0,1`)."""
    params = config.hydra.sweeper.get("params")
    return OmegaConf.to_container(params) if params is not None else {}
