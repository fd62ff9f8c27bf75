"""cadft train: fine-tune a backbone to predict CAD from records as text; one Hydra app for every strategy.

    cadft train [model=qlora|lora|full] [head=classifier|verbalizer] [imbalance=weighted|oversample|none]
                [zero=none|2|3] [backbone.path=ID_OR_DIR]
                [backbone=smollm2_135m|gemma3_270m|tiny|hf|llama3_8b|mistral_7b|qwen2_5_7b|qwen2_5_1_5b]
                [data=synthetic|ukb|seed_json data.path=FILE]
                [task=hard_cad|hard_cad_prevalent|broad_chd|mi|hard_cad_no_prior_cvd]
                [text=text|list|compact|categories] [train.KEY=VALUE ...] [tracking.uri=http://127.0.0.1:5000]
                [--cfg job] [-m (sweep)]

Every key of the config can be overridden (`--cfg job` prints the composed config; docs/configuration.md lists them).
A run: prepare data (cached) -> tokenize -> build the model -> train with validation AUROC for model selection (the test
split is not touched) -> save the best model to <run dir>/model -> score validation and test once -> metrics.json,
predictions.jsonl, plots, report.html -> everything to MLflow (cadft.train.run).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from cadft.cli.common import hydra_app, stop_on_signals
from cadft.config.validate import validate, validate_group, with_absolute_paths
from cadft.errors import CadftError
from cadft.train import distributed

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    # Before Hydra parses the command line: launcher flags, the config checked (before torch is imported: a mistake
    # stops in seconds), one run dir for all ranks, SIGTERM (kill, torchrun, sbatch) and SIGINT ending the run KILLED.
    argv = sys.argv[1:] if argv is None else list(argv)
    distributed.accept_local_rank_flag(argv)
    stop_on_signals()
    hydra_app("train", "config", _train, argv, before_hydra=distributed.prepare_launch)
    distributed.leave()  # only after a normal end (Hydra exits on an error): a failed rank must not wait for the others


def _train(cfg) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from cadft.tracking.sweep import sweep_job
    from cadft.train.run import run_training

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir).resolve()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        run_training(with_absolute_paths(validate(cfg)), run_dir)
        return
    job = sweep_job(hydra_cfg)
    try:
        run_training(
            with_absolute_paths(validate(cfg)), run_dir, job
        )  # each job's own values: the command line checked their composition
    except KeyboardInterrupt:  # the whole sweep stops here: its parent run too ends KILLED
        if job is not None:
            job.stopped()
        raise
    except Exception as err:  # Hydra ends a sweep at a failed job: record this one as FAILED and let the others run
        log.error("sweep job %s failed: %s", hydra_cfg.job.num, err, exc_info=not isinstance(err, CadftError))
        _record_failed_job(cfg, run_dir, err, job)


def _record_failed_job(cfg, run_dir: Path, err: Exception, job) -> None:
    """Leave the job's MLflow run FAILED with the error; a job that failed before run_training opened its run
    (a bad value, missing data) gets one, so the sweep still shows every job."""
    from omegaconf import OmegaConf

    from cadft.tracking import names, session

    if not session.reopen_run(run_dir):
        tags = {
            tag: str(OmegaConf.select(cfg, key, default=""))
            for tag, key in (
                ("strategy", "model.name"),
                ("head", "head.name"),
                ("imbalance", "imbalance.method"),
                ("backbone", "backbone.name"),
                ("task", "task.name"),
            )
        } | {
            "zero": str(OmegaConf.select(cfg, "zero.stage", default=None) or "none"),
            names.KIND_TAG: names.KIND_LLM,
            names.RUN_DIR_TAG: str(run_dir),
        }
        tracking, paths = validate_group(cfg, "tracking"), validate_group(cfg, "paths")
        session.start_run(
            tracking,
            paths,
            run_dir,
            tags | (job.tags if job else {}),
            run_name=tracking.run_name or (job and job.run_name),
            parent_run_id=job and job.parent_run_id,
        )
    session.set_tags({names.ERROR_TAG: f"{type(err).__name__}: {err}"})
    session.end_run("FAILED")


if __name__ == "__main__":
    main()
