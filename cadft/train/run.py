"""One training run: prepare data (cached) -> tokenize -> build the model -> train with validation AUROC for model
selection (the test split is not touched) -> save the best model to <run dir>/model -> score validation and test once
-> metrics.json, predictions.jsonl, plots -> everything to MLflow. `cadft train` (cadft.cli.train) calls it with the
validated config; every rank of a multi-process run calls it, and only rank 0 writes and logs.
"""

from __future__ import annotations

import json
import logging
import math
import resource
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from cadft.config.schema import Config
from cadft.config.typecheck import plain
from cadft.config.validate import to_yaml
from cadft.data.subsample import subsample, training_records
from cadft.errors import CadftError
from cadft.files import check_writable, with_umask_modes, write_text_atomic, writing
from cadft.layout import REPORT_FILE, TRAINING_SAMPLE_FILE, RunLayout
from cadft.tracking import names, session, store
from cadft.train.distributed import is_main_process

if TYPE_CHECKING:
    from cadft.eval.recalibration import TrainingSample
    from cadft.tracking.sweep import SweepJob

log = logging.getLogger(__name__)


def run_training(config: Config, run_dir: Path, sweep_job: SweepJob | None = None) -> dict:
    """Train and evaluate one configuration; returns the final metrics (the same as eval/metrics.json). `sweep_job`:
    the job's place in a sweep (its MLflow run becomes a child of the sweep's)."""
    from transformers import DataCollatorWithPadding, set_seed

    from cadft.data.prepare import prepare
    from cadft.eval.baselines.oracle import check_oracle
    from cadft.train.backbone import load_tokenizer, resolve_backbone
    from cadft.train.dataset import tokenize_split
    from cadft.train.imbalance import resolve_imbalance
    from cadft.train.model import build_model, merged_for_scoring, trainable_parameter_summary
    from cadft.train.trainer import (
        CadftTrainer,
        MlflowMetricsCallback,
        build_training_arguments,
        classification_metrics,
        early_stopping,
        resolve_device,
    )
    from cadft.train.zero import keep_4bit_layout, load_unpartitioned, one_trainable_dtype

    run_dir = run_dir.resolve()
    run = RunLayout(run_dir)
    check_writable(run_dir, "run dir (hydra.run.dir)")
    store.preflight(config.tracking, config.paths)
    device = resolve_device(config.train.device)
    _reset_peak_memory(device)
    resume_from = _resume_checkpoint(config, run_dir)
    # Built into the cache on first use before DeepSpeed is configured: under ZeRO-3 a model is partitioned as it is
    # made,
    # a collective that only the building rank would join (every rank hung on a fresh cache).
    backbone_path = resolve_backbone(config.backbone, config.paths.cache_dir)
    args = build_training_arguments(config, run.checkpoints, device)  # before the model: ZeRO-3 partitions at load

    with args.main_process_first(desc="prepare data"):  # the other ranks then read rank 0's cached table
        prepared = prepare(config)
    table = prepared.table()
    check_oracle(config, table)  # a stale oracle fails now, not in the report after training
    if is_main_process():  # cadft eval reads the run's config and finds its own splits here
        write_text_atomic(run.config, to_yaml(config))
        write_text_atomic(
            run.prepared_record, json.dumps({"table": str(prepared.table_path), "key": prepared.key}) + "\n"
        )
    tokenizer = load_tokenizer(config.backbone, config.paths.cache_dir)
    max_length = config.train.max_length
    train_rows = training_records(table, config)
    val_rows = subsample(table.filter(pl.col("split") == "validation"), config.train.max_eval_examples, config.seed)
    if int(val_rows["label"].sum()) == 0:
        raise CadftError(
            "the validation split has no cases: model selection needs them; use a larger cohort or other "
            "data.split.fractions"
        )
    train_set = tokenize_split(_training_texts(train_rows, config), "train", tokenizer, max_length, config.head)
    val_set = tokenize_split(val_rows, "validation", tokenizer, max_length, config.head)
    applied = resolve_imbalance(config.imbalance, train_set.labels, train_set.weights)
    evaluates = _evaluate_only_when_it_chooses(args, len(train_set))
    if config.train.early_stopping_patience and not evaluates:
        log.warning("train.early_stopping_patience is set, but validation is scored once, after training: no stopping")

    set_seed(config.seed)  # the new head and adapters start the same in every run and on every rank
    model = build_model(
        config.model,
        backbone_path,
        tokenizer,
        head=config.head,
        device=device,
        trust_remote_code=config.backbone.trust_remote_code,
    )
    if config.zero.stage == 3:
        keep_4bit_layout(model)
        one_trainable_dtype(model)
    parameters = trainable_parameter_summary(model)
    tags = run_tags(config, run_dir) | {"data_hash": prepared.key[:12]} | (sweep_job.tags if sweep_job else {})
    session.start_run(
        config.tracking,
        config.paths,
        run_dir,
        tags,
        run_name=config.tracking.run_name or (sweep_job and sweep_job.run_name),
        parent_run_id=sweep_job and sweep_job.parent_run_id,
    )
    status = "FAILED"
    try:
        session.log_params(
            names.flat_config(plain(config))
            | applied.as_params()
            | {
                "data.train_examples": len(train_set),
                "data.validation_examples": len(val_set),
                "data.truncated_train": train_set.truncated,
                "data.truncated_validation": val_set.truncated,
                "model.trainable_parameters": parameters["trainable"],
                "model.total_parameters": parameters["total"],
            }
            | names.cohort_params(prepared.card)
        )
        trainer = CadftTrainer(
            model=model,
            args=args,
            train_dataset=train_set,
            eval_dataset=val_set.sorted_by_length(),
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
            compute_metrics=classification_metrics,
            imbalance=applied,
            sampler_seed=config.seed,
            callbacks=[MlflowMetricsCallback(), *early_stopping(config.train.early_stopping_patience, evaluates)],
        )
        started = time.perf_counter()
        with writing(run.checkpoints):
            trainer.train(resume_from_checkpoint=resume_from)
        train_seconds = time.perf_counter() - started
        steps = {  # where training stopped, and the checkpoint validation chose (the last step when none was chosen)
            names.TRAINING_STEPS["steps"]: trainer.state.global_step,
            names.TRAINING_STEPS["best_step"]: trainer.state.best_global_step or trainer.state.global_step,
        }
        sample = training_sample(table, train_rows, applied)
        _save_model(trainer, run, config, sample)
        metrics = {}
        if trainer.is_world_process_zero():
            # Under ZeRO-3 the trained weights are spread over the ranks: rank 0 scores the saved model instead.
            # Scored as cadft eval and cadft predict score the saved model: with the adapters merged (trainable no
            # more).
            model = (
                load_unpartitioned(run.model_dir, device)
                if config.zero.stage == 3
                else merged_for_scoring(trainer.model)
            )
            metrics, baselines = _evaluate(
                config, model, tokenizer, table, run, device, train_rows, sample, prepared.card
            )
            usage = {
                names.USAGE_METRICS["train_seconds"]: train_seconds,
                names.USAGE_METRICS["peak_memory_gb"]: _peak_memory_gb(device),
            }
            session.log_metrics(usage | steps)
            _log_artifacts(config, run, prepared.card_path)
            _print_summary(config, metrics, baselines, usage, run, train_set.truncated + val_set.truncated)
        status = "FINISHED"
        return metrics
    except KeyboardInterrupt:  # Ctrl-C, SIGINT or SIGTERM (cadft.cli.common.stop_on_signals)
        status = "KILLED"
        raise
    finally:
        session.end_run(status)  # never left RUNNING: FINISHED, FAILED on an exception, KILLED when stopped


def _save_model(trainer, run: RunLayout, config: Config, sample: TrainingSample) -> None:
    """model/: the weights (on every rank: under ZeRO-3 they gather them together), then on rank 0 the training
    sample, cadft_model.json with what the model was trained on and its files' checksums (cadft.train.provenance),
    and the umask's modes. A model folder that could not be saved whole (a full disk, a stop) is removed: it never
    looks saved."""
    from cadft.train import provenance
    from cadft.train.model import write_checkpoint_info

    try:
        with writing(run.model_dir):
            trainer.save_model(str(run.model_dir))
            if trainer.is_world_process_zero():
                sample.save(run.model_dir / TRAINING_SAMPLE_FILE)
                write_checkpoint_info(trainer.model, run.model_dir)
                with_umask_modes(run.model_dir)  # safetensors writes the adapter 0600
                provenance.seal(run.model_dir, config)
    except BaseException:
        if trainer.is_world_process_zero():
            shutil.rmtree(run.model_dir, ignore_errors=True)
        raise


def run_tags(config: Config, run_dir: Path) -> dict[str, str]:
    """What a run is, as MLflow tags (the UI shows them as run-table columns)."""
    return {
        "strategy": config.model.name,
        "head": config.head.name,
        "imbalance": config.imbalance.method,
        "zero": str(config.zero.stage or "none"),
        "backbone": config.backbone.name,
        "task": config.task.name,
        names.KIND_TAG: names.KIND_LLM,
        names.RUN_DIR_TAG: str(run_dir),
    }


def _evaluate_only_when_it_chooses(args, n_train: int) -> bool:
    """An evaluation only at the last step chooses no checkpoint, and validation is scored in full right after
    training: the Trainer's own pass is then skipped (the demo's case). Whether validation is scored during
    training."""
    from transformers.trainer_utils import IntervalStrategy

    steps_per_epoch = math.ceil(
        math.ceil(n_train / (args.per_device_train_batch_size * max(1, args.world_size)))
        / args.gradient_accumulation_steps
    )
    steps = args.max_steps if args.max_steps > 0 else math.ceil(steps_per_epoch * args.num_train_epochs)
    every = steps_per_epoch if args.eval_strategy == IntervalStrategy.EPOCH else args.eval_steps
    if every >= steps:
        log.info("one evaluation at the last step would choose nothing: validation is scored once, after training")
        args.eval_strategy = IntervalStrategy.NO
        args.load_best_model_at_end = False
        return False
    return True


def _training_texts(train_rows: pl.DataFrame, config: Config) -> pl.DataFrame:
    """The training records as the model reads them: with train.shuffle_feature_order, each record's features in an
    order of its own (drawn from the seed and its eid: the same in every epoch and on every rank), written from the
    prepared table's feature columns exactly as its text was."""
    if not config.train.shuffle_feature_order:
        return train_rows
    from cadft.data.features import parse_features
    from cadft.data.text import render_texts

    texts = render_texts(train_rows, parse_features(config.data.features), config.text, order=0, seed=config.seed)
    return train_rows.with_columns(texts)


def training_sample(table: pl.DataFrame, train_rows: pl.DataFrame, applied) -> TrainingSample:
    """What the model was trained on relative to the whole training split (eval.recalibration=prior_shift's input);
    IPCW-weighted counts under task.censoring=ipcw, as the loss weighs them."""
    from cadft.data.ipcw import weighted_cases
    from cadft.eval.recalibration import TrainingSample

    population_cases, population_n = weighted_cases(table.filter(pl.col("split") == "train"))
    sample_cases, sample_n = weighted_cases(train_rows)
    fraction = applied.positive_fraction if applied.positive_fraction is not None else sample_cases / sample_n
    return TrainingSample(population_cases, population_n, float(fraction), tuple(applied.class_weights))


def _evaluate(
    config: Config,
    model,
    tokenizer,
    table: pl.DataFrame,
    run: RunLayout,
    device: str,
    train_rows: pl.DataFrame,
    sample: TrainingSample,
    card: dict,
) -> tuple[dict, dict]:
    """Score, recalibrate on validation and save the calibrator beside the model, compare with the baselines."""
    from cadft.eval.run import evaluate_model
    from cadft.train.provenance import save_calibrator

    with writing(run.eval_dir):
        metrics, baselines = evaluate_model(
            model,
            tokenizer,
            table,
            config,
            run.eval_dir,
            device=device,
            train_rows=train_rows,
            sample=sample,
            card=card,
        )
    save_calibrator(run.model_dir, metrics["recalibration"])
    session.log_metrics(names.flatten_metrics(metrics))
    return metrics, baselines


def _log_artifacts(config: Config, run: RunLayout, card_path: Path) -> None:
    from cadft.eval.report import shareable_files

    session.log_artifacts([run.config, card_path], artifact_path="config")
    session.log_artifacts(
        shareable_files(run.eval_dir, include_eids=store.may_log_eids(config.tracking, config.paths)),
        artifact_path="eval",
    )
    if config.tracking.log_model == "adapter":
        session.log_artifacts([run.model_dir])
    elif config.tracking.log_model == "pyfunc" and session.is_active():
        from cadft.tracking.logged_model import log_risk_model

        register_as = config.tracking.register_model
        model_uri = session.log_with(
            lambda client, run_id: log_risk_model(run.root, client.tracking_uri, run_id, register_as)
        )
        session.set_tags({names.MODEL_URI_TAG: model_uri})


def _resume_checkpoint(config: Config, run_dir: Path) -> str | None:
    if not config.train.resume:
        return None
    from cadft.train.checkpoints import last_complete

    last = last_complete(RunLayout(run_dir).checkpoints)  # skips incomplete ones, with a warning naming each
    log.info("resuming from %s", last)
    return str(last)


def _reset_peak_memory(device: str) -> None:
    """Peaks are per process: reset them so a run that shares its process (a sweep's jobs, tests) reports its own."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats()
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: resets the peak RSS that ru_maxrss reports
    except OSError:
        log.debug("cannot reset the peak RSS: train/peak_memory_gb is the process's peak so far")


def _peak_memory_gb(device: str) -> float:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def _print_summary(config: Config, metrics: dict, baselines: dict, usage: dict, run: RunLayout, truncated: int) -> None:
    from cadft.eval.summary import print_summary

    print_summary(
        f"cadft train: {config.model.name} / {config.imbalance.method} / {config.backbone.name} on {config.task.name} "
        f"(risks recalibrated: {metrics['recalibration']['method']}; test scored once)",
        {metrics["model"]: metrics} | baselines,
        metrics.get("comparison"),
        footer=[
            f"train time {usage[names.USAGE_METRICS['train_seconds']]:.0f} s, peak memory "
            f"{usage[names.USAGE_METRICS['peak_memory_gb']]:.2f} GiB, truncated records {truncated}",
            f"report: {run.eval_dir / REPORT_FILE}",
        ],
    )
