"""cadft-train: fine-tune a backbone to predict CAD from records as text; one Hydra app for every strategy.

    cadft-train [model=qlora|lora|full] [head=classifier|verbalizer] [imbalance=weighted|oversample|none] [zero=none|2|3]
                [backbone=smollm2_135m|tiny|hf|llama3_8b|mistral_7b|qwen2_5_7b|qwen2_5_1_5b backbone.path=ID_OR_DIR]
                [data=synthetic|ukb|seed_json data.path=FILE] [task=hard_cad|hard_cad_prevalent|broad_chd|mi|hard_cad_no_prior_cvd]
                [text=text|list] [train.KEY=VALUE ...]
                [tracking.uri=http://127.0.0.1:5000] [--cfg job] [-m (sweep)]

Flags (all config keys; `--cfg job` prints the composed config):
  model.*      strategy: learning_rate, optim, dtype, gradient_checkpointing, quantization, lora.{r,alpha,dropout,target_modules}
  head.*       verbalizer: question, system (null: the chat template's default), answer_yes, answer_no
  imbalance.*  method, class_weights (inverse_frequency | [w0, w1]), positive_fraction (oversample)
  train.*      batch_size, eval_batch_size, gradient_accumulation_steps, epochs, max_steps, max_length, warmup_ratio,
               lr_scheduler, max_grad_norm, logging_steps, eval_steps, save_steps, save_total_limit, resume,
               max_train_examples, max_eval_examples, device, dataloader_workers
  eval.*       threshold choice, bootstrap, calibration, subgroups (the final validation/test evaluation)
  baselines.*  which (logistic, lightgbm, *_all, pce, pce_recalibrated, age, zero_shot), their tuning grids
  tracking.*   uri, experiment, artifact_location, run_name, log_model, log_eids, enabled
  paths.*      output_dir (runs, MLflow store, prepared data), prepared_dir, cache_dir (converted backbones)

A run: prepare data (cached) -> tokenize -> build the model -> train with validation AUROC for model
selection (the test split is not touched) -> save the best model to <run dir>/model -> score validation
and test once -> metrics.json, predictions.jsonl, plots -> everything to MLflow.
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
import polars as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from cadft import distributed, tracking
from cadft.cli import CONF_DIR, absolute_paths, check_command_line, exit_on_user_error, quote_stage_choices
from cadft.config import validate
from cadft.layout import CALIBRATOR_FILE, REPORT_FILE, TRAINING_SAMPLE_FILE, RunLayout
from cadft.errors import CadftError

if TYPE_CHECKING:
    from cadft.eval.recalibration import TrainingSample

log = logging.getLogger(__name__)


def run_training(cfg: DictConfig, run_dir: Path) -> dict:
    """Train and evaluate one configuration; returns the final metrics (the same as eval/metrics.json)."""
    from transformers import DataCollatorWithPadding, set_seed

    from cadft import imbalance as imbalance_mod
    from cadft.backbone import load_tokenizer, resolve_backbone
    from cadft.dataset import subsample, tokenize_split, training_records
    from cadft.prepare import prepare
    from cadft.model import build_model, merged_for_scoring, trainable_parameter_summary, write_checkpoint_info
    from cadft.trainer import (
        CadftTrainer,
        MlflowMetricsCallback,
        build_training_arguments,
        callbacks_from_env,
        classification_metrics,
        resolve_device,
    )
    from cadft.zero import keep_4bit_layout, load_unpartitioned, one_trainable_dtype

    validate(cfg)  # also each sweep job's own values (the command line checked only their composition)
    run_dir = run_dir.resolve()
    run = RunLayout(run_dir)
    absolute_paths(cfg)
    tracking.check_writable(run_dir, "run dir (hydra.run.dir)")
    tracking.preflight(cfg)
    device = resolve_device(cfg.train.device)
    _reset_peak_memory(device)
    resume_from = _resume_checkpoint(cfg, run_dir)
    # Built into the cache on first use before DeepSpeed is configured: under ZeRO-3 a model is partitioned as it is made,
    # a collective that only the building rank would join (every rank hung on a fresh cache).
    backbone_path = resolve_backbone(cfg.backbone, cfg.paths.cache_dir)
    args = build_training_arguments(cfg, run.checkpoints, device)  # before the model: ZeRO-3 partitions at load

    with args.main_process_first(desc="prepare data"):  # the other ranks then read rank 0's cached table
        prepared = prepare(cfg)
    table = prepared.table()
    if tracking.is_main_process():  # cadft-eval reads the run's config and finds its own splits here
        run.config.write_text(OmegaConf.to_yaml(cfg, resolve=True))
        run.prepared_record.write_text(json.dumps({"table": str(prepared.table_path), "key": prepared.key}) + "\n")
    tokenizer = load_tokenizer(cfg.backbone, cfg.paths.cache_dir)
    max_length = int(cfg.train.max_length)
    train_rows = training_records(table, cfg)
    val_rows = subsample(table.filter(pl.col("split") == "validation"), cfg.train.max_eval_examples, int(cfg.seed))
    if int(val_rows["label"].sum()) == 0:
        raise CadftError("the validation split has no cases: model selection needs them; use a larger cohort or other data.split.fractions")
    train_set = tokenize_split(train_rows, "train", tokenizer, max_length, cfg.head)
    val_set = tokenize_split(val_rows, "validation", tokenizer, max_length, cfg.head)
    applied = imbalance_mod.resolve(cfg.imbalance, train_set.labels)
    _evaluate_only_when_it_chooses(args, len(train_set))

    set_seed(int(cfg.seed))  # the new head and adapters start the same in every run and on every rank
    model = build_model(cfg.model, backbone_path, tokenizer, head_cfg=cfg.head, device=device,
                        trust_remote_code=bool(cfg.backbone.get("trust_remote_code", False)))
    if cfg.zero.stage == 3:
        keep_4bit_layout(model)
        one_trainable_dtype(model)
    parameters = trainable_parameter_summary(model)
    tracking.start_run(cfg, run_dir, run_tags(cfg, run_dir) | {"data_hash": prepared.key[:12]})
    status = "FAILED"
    try:
        tracking.log_params(tracking.flat_config(cfg) | applied.as_params() | {
            "data.train_examples": len(train_set), "data.validation_examples": len(val_set),
            "data.truncated_train": train_set.truncated, "data.truncated_validation": val_set.truncated,
            "model.trainable_parameters": parameters["trainable"], "model.total_parameters": parameters["total"],
        } | tracking.cohort_params(prepared.card))
        trainer = CadftTrainer(
            model=model, args=args, train_dataset=train_set, eval_dataset=val_set.sorted_by_length(),
            data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer,
            compute_metrics=classification_metrics, imbalance=applied, sampler_seed=int(cfg.seed),
            callbacks=[MlflowMetricsCallback(), *callbacks_from_env()],
        )
        started = time.perf_counter()
        trainer.train(resume_from_checkpoint=resume_from)
        train_seconds = time.perf_counter() - started
        trainer.save_model(str(run.model_dir))  # on every rank: under ZeRO-3 they gather the weights together
        metrics = {}
        if trainer.is_world_process_zero():
            write_checkpoint_info(trainer.model, run.model_dir)
            sample = training_sample(table, train_rows, applied)
            sample.save(run.model_dir / TRAINING_SAMPLE_FILE)
            # Under ZeRO-3 the trained weights are spread over the ranks: rank 0 scores the saved model instead.
            # Scored as cadft-eval and cadft-predict score the saved model: with the adapters merged (trainable no more).
            model = load_unpartitioned(run.model_dir, device) if cfg.zero.stage == 3 else merged_for_scoring(trainer.model)
            metrics, baselines = _evaluate(cfg, model, tokenizer, table, run, device, train_rows, sample, prepared.card)
            usage = {tracking.USAGE_METRICS["train_seconds"]: train_seconds, tracking.USAGE_METRICS["peak_memory_gb"]: _peak_memory_gb(device)}
            tracking.log_metrics(usage)
            _log_artifacts(cfg, run, prepared.card_path)
            _print_summary(cfg, metrics, baselines, usage, run, train_set.truncated + val_set.truncated)
        status = "FINISHED"
        return metrics
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (main() turns it into this)
        status = "KILLED"
        raise
    finally:
        tracking.end_run(status)  # never left RUNNING: FINISHED, FAILED on an exception, KILLED when stopped


def run_tags(cfg: DictConfig, run_dir: Path) -> dict[str, str]:
    """What a run is, as MLflow tags (the UI shows them as run-table columns)."""
    return {
        "strategy": cfg.model.name, "head": cfg.head.name, "imbalance": cfg.imbalance.method, "zero": str(cfg.zero.stage or "none"),
        "backbone": cfg.backbone.name, "task": cfg.task.name, "git_commit": tracking.git_commit(),
        tracking.KIND_TAG: tracking.KIND_LLM, tracking.RUN_DIR_TAG: str(run_dir),
    }


def _evaluate_only_when_it_chooses(args, n_train: int) -> None:
    """An evaluation only at the last step chooses no checkpoint, and validation is scored in full right after
    training: the Trainer's own pass is then skipped (the demo's case)."""
    from transformers.trainer_utils import IntervalStrategy

    steps_per_epoch = math.ceil(math.ceil(n_train / (args.per_device_train_batch_size * max(1, args.world_size))) / args.gradient_accumulation_steps)
    steps = args.max_steps if args.max_steps > 0 else math.ceil(steps_per_epoch * args.num_train_epochs)
    if args.eval_steps >= steps:
        log.info("one evaluation at the last step would choose nothing: validation is scored once, after training")
        args.eval_strategy = IntervalStrategy.NO
        args.load_best_model_at_end = False


def training_sample(table: pl.DataFrame, train_rows: pl.DataFrame, applied) -> TrainingSample:
    """What the model was trained on relative to the whole training split (eval.recalibration=prior_shift's input)."""
    from cadft.eval.recalibration import TrainingSample

    population = table.filter(pl.col("split") == "train")
    fraction = applied.positive_fraction if applied.positive_fraction is not None else float(train_rows["label"].mean())
    return TrainingSample(int(population["label"].sum()), population.height, float(fraction), tuple(applied.class_weights))


def _evaluate(cfg: DictConfig, model, tokenizer, table: pl.DataFrame, run: RunLayout, device: str, train_rows: pl.DataFrame,
              sample: TrainingSample, card: dict) -> tuple[dict, dict]:
    """Score, recalibrate on validation and save the calibrator beside the model, compare with the baselines."""
    from cadft.eval.metrics import flatten_metrics
    from cadft.eval.recalibration import Recalibrator
    from cadft.eval.run import evaluate_model

    metrics, baselines = evaluate_model(model, tokenizer, table, cfg, run.eval_dir, device=device, train_rows=train_rows, sample=sample, card=card)
    Recalibrator(**metrics["recalibration"]).save(run.model_dir / CALIBRATOR_FILE)
    tracking.log_metrics(flatten_metrics(metrics))
    return metrics, baselines


def _log_artifacts(cfg: DictConfig, run: RunLayout, card_path: Path) -> None:
    from cadft.eval.run import artifact_files

    tracking.log_artifacts([run.config, card_path], artifact_path="config")
    tracking.log_artifacts(artifact_files(run.eval_dir, include_eids=tracking.may_log_eids(cfg)), artifact_path="eval")
    if cfg.tracking.log_model == "adapter":
        tracking.log_artifacts([run.model_dir])
    elif cfg.tracking.log_model == "pyfunc" and tracking.is_active():
        from cadft.pyfunc import log_risk_model

        register_as = cfg.tracking.get("register_model")
        model_uri = tracking.log_with(lambda client, run_id: log_risk_model(run.root, client.tracking_uri, run_id, register_as))
        tracking.set_tags({tracking.MODEL_URI_TAG: model_uri})


def _resume_checkpoint(cfg: DictConfig, run_dir: Path) -> str | None:
    if not cfg.train.resume:
        return None
    from cadft.checkpoints import last_complete

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


def _print_summary(cfg: DictConfig, metrics: dict, baselines: dict, usage: dict, run: RunLayout, truncated: int) -> None:
    from cadft.eval.summary import print_summary

    print_summary(f"cadft-train: {cfg.model.name} / {cfg.imbalance.method} / {cfg.backbone.name} on {cfg.task.name} "
                  f"(risks recalibrated: {metrics['recalibration']['method']}; test scored once)", {metrics["model"]: metrics} | baselines,
                  metrics.get("comparison"), footer=[
                      f"train time {usage[tracking.USAGE_METRICS['train_seconds']]:.0f} s, peak memory "
                      f"{usage[tracking.USAGE_METRICS['peak_memory_gb']]:.2f} GiB, truncated records {truncated}",
                      f"report: {run.eval_dir / REPORT_FILE}"])


def main() -> None:
    # Before Hydra parses the command line: `zero=2` as a choice, launcher flags, the config checked (before torch is
    # imported: a mistake stops in seconds), one run dir for all ranks.
    quote_stage_choices(sys.argv)
    distributed.accept_local_rank_flag(sys.argv)
    check_command_line("cadft-train", "config", sys.argv[1:])
    distributed.prepare_launch(sys.argv)
    signal.signal(signal.SIGTERM, _stop)  # kill, torchrun, sbatch: the run ends KILLED as after Ctrl-C, not RUNNING
    _hydra_main()
    distributed.leave()  # only after a normal end (Hydra exits on an error): a failed rank must not wait for the others


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signal.Signals(signum).name}")


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
@exit_on_user_error("cadft-train")
def _hydra_main(cfg: DictConfig) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir).resolve()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        run_training(cfg, run_dir)
        return
    try:
        run_training(cfg, run_dir)
    except Exception as err:  # Hydra ends a sweep at a failed job: record this one as FAILED and let the others run
        log.error("sweep job %s failed: %s", hydra_cfg.job.num, err, exc_info=not isinstance(err, CadftError))
        _record_failed_job(cfg, run_dir, err)


def _record_failed_job(cfg: DictConfig, run_dir: Path, err: Exception) -> None:
    """Leave the job's MLflow run FAILED with the error; a job that failed before run_training opened its run
    (a bad value, missing data) gets one, so the sweep still shows every job."""
    if not tracking.reopen_run(run_dir):
        tracking.start_run(cfg, run_dir, run_tags(cfg, run_dir))
    tracking.set_tags({tracking.ERROR_TAG: f"{type(err).__name__}: {err}"})
    tracking.end_run("FAILED")


if __name__ == "__main__":
    main()
