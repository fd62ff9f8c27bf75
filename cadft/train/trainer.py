"""The Hugging Face Trainer with cadft's loss and sampler.

Loss: class-weighted cross-entropy in fp32 (each example's weight also multiplied by its IPCW weight under
task.censoring=ipcw), normalised by the total weight of the whole accumulated batch on all ranks, i.e. exactly the
loss of one large batch (GA=2 x batch 4 equals GA=1 x batch 8).
transformers 5.x hands `num_items_in_batch` to `compute_loss` for that purpose; cadft replaces the
count by the summed class weights, and says the loss is already scaled (`loss_is_scaled_for_ga`).
Gradients are averaged over ranks (DDP, DeepSpeed), so each rank's share is multiplied by the world size.

Logged per step besides the Trainer's loss, learning rate and grad norm: the unweighted loss and
examples per second.

Checkpoints are written whole into checkpoints/.staging/ and renamed when complete (cadft/checkpoints.py).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import rotate_checkpoints

from cadft.config.schema import Config
from cadft.errors import CadftError
from cadft.files import publish_dir, with_umask_modes
from cadft.tracking import names, session
from cadft.train.checkpoints import STAGING_DIR, TRAINER_STATE
from cadft.train.dataset import EXAMPLE_WEIGHT
from cadft.train.imbalance import AppliedImbalance, GroupedSampler, example_loss_weights, weighted_cross_entropy
from cadft.train.model import resolve_dtype, write_checkpoint_info
from cadft.train.zero import deepspeed_config, ready_process


class CadftTrainer(Trainer):
    loss_is_scaled_for_ga = True  # compute_loss divides by the accumulated batch's total weight

    def __init__(self, *args, imbalance: AppliedImbalance, sampler_seed: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.imbalance = imbalance
        self.sampler_seed = sampler_seed
        self.class_weights = torch.tensor(imbalance.class_weights, dtype=torch.float32)
        self._unweighted_sum = 0.0
        self._unweighted_count = 0
        self._examples_since_log = 0
        self._last_log_time = time.perf_counter()
        self._staging_parent: str | None = None  # while a checkpoint is written: where the Trainer puts it

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        return GroupedSampler(
            dataset.lengths,
            dataset.labels,
            self.imbalance,
            batch_size=self.args.per_device_train_batch_size,
            world_size=max(1, self.args.world_size),
            seed=self.sampler_seed,
        )

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device):
        """The summed class (times IPCW) weight of the accumulated batch, over all ranks (the loss's denominator).
        Evaluation asks too (prediction_step, per batch; all ranks in step), but compute_loss does not use it there."""
        total = sum(
            example_loss_weights(self.class_weights, batch["labels"].cpu(), _cpu(batch.get(EXAMPLE_WEIGHT))).sum()
            for batch in batch_samples
        )
        total = torch.as_tensor(total, dtype=torch.float32, device=device)
        if self.args.world_size > 1:
            total = self.accelerator.gather(total.reshape(1)).sum()
        return total

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        example_weights = inputs.pop(EXAMPLE_WEIGHT, None)
        outputs = model(**inputs)
        weighted, plain = weighted_cross_entropy(outputs.logits, labels, self.class_weights, example_weights)
        # Evaluation (model.eval()) gets num_items_in_batch too in transformers 5.x: decide on the mode instead.
        if not model.training:  # this batch's weighted mean, not counted in the training loss statistics
            loss = weighted.sum() / example_loss_weights(self.class_weights, labels, example_weights).sum()
        else:
            loss = weighted.sum() / num_items_in_batch * max(1, self.args.world_size)
            self._unweighted_sum += float(plain.detach().sum())
            self._unweighted_count += len(labels)
            self._examples_since_log += len(labels)
        return (loss, outputs) if return_outputs else loss

    def _get_output_dir(self, trial) -> str:
        return self._staging_parent or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        """The Trainer's checkpoint, written whole into checkpoints/.staging/checkpoint-N with cadft_model.json, then
        renamed to checkpoints/checkpoint-N: a run killed while saving leaves no half-written checkpoint-N."""
        parent = Path(super()._get_output_dir(trial))
        name = f"checkpoint-{self.state.global_step}"
        staging, final = parent / STAGING_DIR / name, parent / name
        if self.args.should_save:
            shutil.rmtree(staging, ignore_errors=True)  # left by a run stopped while saving this step
        self.accelerator.wait_for_everyone()
        self._staging_parent = str(staging.parent)
        try:
            super()._save_checkpoint(model, trial)  # its rotation sees only the staging folder: done below instead
        finally:
            self._staging_parent = None
        self.accelerator.wait_for_everyone()  # every rank's shards and RNG state are in
        # On every rank (each loads the best one at the end): the Trainer found the best checkpoint in staging when
        # it is this one; name it where it will be.
        best = parent / f"checkpoint-{self.state.best_global_step}"
        if self.state.best_global_step and (best == final or best.is_dir()):
            self.state.best_model_checkpoint = str(best)
        if self.args.should_save:
            self.state.save_to_json(str(staging / TRAINER_STATE))
            write_checkpoint_info(self.model, staging)
            with_umask_modes(staging)  # safetensors writes the weights 0600
            publish_dir(staging, final)  # over an incomplete checkpoint-N that a resumed run skipped
            rotate_checkpoints(
                output_dir=str(parent),
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=True,
            )
        self.accelerator.wait_for_everyone()  # no rank goes on before checkpoint-N exists

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._unweighted_count:
            now = time.perf_counter()
            unweighted_sum, count = self._unweighted_sum, self._unweighted_count
            if self.args.world_size > 1:  # every rank logs here together: average over all ranks' examples
                totals = torch.tensor([[unweighted_sum, count]], dtype=torch.float64, device=self.args.device)
                unweighted_sum, count = self.accelerator.gather(totals).sum(dim=0).tolist()
            logs["loss_unweighted"] = unweighted_sum / count
            logs["examples_per_second"] = (
                self._examples_since_log * max(1, self.args.world_size) / max(now - self._last_log_time, 1e-9)
            )
            self._unweighted_sum, self._unweighted_count, self._examples_since_log = 0.0, 0, 0
            self._last_log_time = now
        super().log(logs, start_time)


def classification_metrics(eval_prediction) -> dict[str, float]:
    """Validation metrics during training (model selection uses AUROC), IPCW-weighted under task.censoring=ipcw (the
    label ids are then (labels, weights): label_names)."""
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    logits, labels = eval_prediction.predictions, eval_prediction.label_ids
    labels, weights = labels if isinstance(labels, tuple) else (labels, None)
    logits = logits[0] if isinstance(logits, tuple) else logits
    probs = torch.softmax(torch.as_tensor(np.asarray(logits), dtype=torch.float32), dim=-1)[:, 1].numpy()
    if len(np.unique(labels)) < 2:
        return {"brier": float(brier_score_loss(labels, probs, sample_weight=weights))}
    return {
        "auroc": float(roc_auc_score(labels, probs, sample_weight=weights)),
        "auprc": float(average_precision_score(labels, probs, sample_weight=weights)),
        "brier": float(brier_score_loss(labels, probs, sample_weight=weights)),
    }


def label_names(config: Config) -> list[str]:
    """The batch keys the Trainer hands to compute_metrics: the IPCW weights go with the labels under ipcw."""
    return ["labels", EXAMPLE_WEIGHT] if config.task.censoring == "ipcw" else ["labels"]


def resolve_device(setting: str) -> str:
    """auto | cpu | cuda (train.device, checked with the config) -> the device to use; cuda must be there."""
    if setting == "cuda" and not torch.cuda.is_available():
        raise CadftError("train.device=cuda but no CUDA device is visible")
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


def build_training_arguments(config: Config, output_dir: Path, device: str) -> TrainingArguments:
    """TrainingArguments from the train, model and zero groups."""
    t, model = config.train, config.model
    bf16 = device == "cuda" and resolve_dtype(model.dtype, device) == torch.bfloat16
    zero = deepspeed_config(config.zero, model, device)  # None for zero=none; raises on combinations that cannot work
    ready_process(uses_deepspeed=zero is not None)  # what accelerate and DeepSpeed need from this process
    interval = "epoch" if t.eval_every == "epoch" else "steps"  # checkpoints where validation is scored: one is chosen
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        learning_rate=model.learning_rate,
        weight_decay=model.weight_decay,
        optim=model.optim,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,
        max_grad_norm=t.max_grad_norm,
        logging_steps=t.logging_steps,
        eval_strategy=interval,
        eval_steps=t.eval_steps,
        save_strategy=interval,
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model="auroc",
        greater_is_better=True,
        bf16=bf16,
        use_cpu=device == "cpu"
        and zero is None,  # accelerate runs DeepSpeed only with use_cpu off; it finds the CPU itself
        deepspeed=zero,
        seed=config.seed,
        data_seed=config.seed,
        dataloader_num_workers=t.dataloader_workers,
        remove_unused_columns=False,
        label_names=label_names(config),
        report_to="none",
    )


def early_stopping(patience: int | None, evaluates: bool) -> list[TrainerCallback]:
    """transformers' EarlyStoppingCallback for train.early_stopping_patience: training stops after `patience`
    evaluations without a higher validation AUROC, and the Trainer loads the best checkpoint at the end
    (load_best_model_at_end). Nothing when training never evaluates (cadft.train.run)."""
    from transformers import EarlyStoppingCallback

    return [EarlyStoppingCallback(early_stopping_patience=patience)] if patience and evaluates else []


class MlflowMetricsCallback(TrainerCallback):
    """Trainer logs -> MLflow metrics: train/... per logging step, val/... per evaluation."""

    RENAME = names.TRAINER_METRICS

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not state.is_world_process_zero:
            return
        metrics = {}
        for key, value in logs.items():
            if key.startswith("eval_"):
                metrics[names.VALIDATION_DURING_TRAINING + key.removeprefix("eval_")] = value
            elif key in self.RENAME:
                metrics[self.RENAME[key]] = value
        session.log_metrics(metrics, step=state.global_step)


def _cpu(values: torch.Tensor | None) -> torch.Tensor | None:
    return None if values is None else values.cpu()
