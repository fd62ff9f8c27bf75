"""The trainer's loss: class-weighted (times IPCW weights under task.censoring=ipcw), fp32, and exact under gradient
accumulation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from transformers import DataCollatorWithPadding, TrainerCallback

from cadft.train.backbone import load_tokenizer, resolve_backbone
from cadft.train.dataset import TokenizedSplit
from cadft.train.imbalance import resolve_imbalance
from cadft.train.model import build_model
from cadft.train.trainer import CadftTrainer, build_training_arguments, classification_metrics

TEXTS = [
    f"The age at recruitment is {40 + 3 * i} years. The sex is {'Male' if i % 2 else 'Female'}." + " x" * (i % 3)
    for i in range(8)
]
LABELS = np.array([1, 0, 0, 0, 0, 1, 0, 0])
IPCW = np.array([1.25, 1.0, 0.0, 1.1, 1.0, 1.6, 0.0, 1.05])  # task.censoring=ipcw: two records censored (weight 0)


class GradientCapture(TrainerCallback):
    """Gradients of the trained weights just before the first optimizer step."""

    def __init__(self):
        self.grads = None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self.grads is None:
            self.grads = {
                n: p.grad.detach().clone()
                for n, p in model.named_parameters()
                if p.requires_grad and p.grad is not None
            }


def _trainer(
    make_config,
    output_dir,
    *overrides,
    imbalance="weighted",
    eval_indices=slice(None),
    callbacks=(),
    learning_rate=None,
    example_weights=None,
):
    cfg = make_config(
        "model=lora",
        "model.lora.dropout=0.0",
        f"imbalance={imbalance}",
        "train.max_steps=1",
        "train.logging_steps=1",
        "train.max_grad_norm=1e9",
        "train.warmup_ratio=0.0",
        *overrides,
    )
    if learning_rate is not None:  # the config check asks for model.learning_rate > 0: 0 is set on the typed config
        cfg = replace(cfg, model=replace(cfg.model, learning_rate=learning_rate))
    tokenizer = load_tokenizer(cfg.backbone, cfg.paths.cache_dir)
    torch.manual_seed(0)
    model = build_model(cfg.model, resolve_backbone(cfg.backbone, cfg.paths.cache_dir), tokenizer, head=cfg.head)
    ids = tokenizer(TEXTS)["input_ids"]
    data = TokenizedSplit("train", np.arange(8), LABELS, ids, 0, example_weights)
    held_out = np.arange(8)[eval_indices]
    eval_data = TokenizedSplit(
        "validation",
        held_out,
        LABELS[held_out],
        [ids[i] for i in held_out],
        0,
        None if example_weights is None else example_weights[held_out],
    )
    return CadftTrainer(
        model=model,
        args=build_training_arguments(cfg, output_dir, "cpu"),
        train_dataset=data,
        eval_dataset=eval_data,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        imbalance=resolve_imbalance(cfg.imbalance, LABELS, example_weights),
        sampler_seed=0,
        callbacks=list(callbacks),
        compute_metrics=classification_metrics,
    )


def _train_one_step(make_config, tmp_path, *, batch_size, accumulation, imbalance="weighted", example_weights=None):
    capture = GradientCapture()
    trainer = _trainer(
        make_config,
        tmp_path / f"ckpt-{batch_size}-{accumulation}",
        f"train.batch_size={batch_size}",
        f"train.gradient_accumulation_steps={accumulation}",
        *(["task.censoring=ipcw"] if example_weights is not None else []),
        imbalance=imbalance,
        callbacks=[capture],
        example_weights=example_weights,
    )
    trainer.train()
    logged = next(entry for entry in trainer.state.log_history if "loss" in entry)
    return logged, capture.grads, trainer


def _expected_loss(make_config, weights, indices=slice(None), example_weights=None):
    """The weighted and the plain mean cross-entropy of TEXTS[indices] in one batch, computed directly from the model
    at init (each example's class weight times its IPCW weight, when given)."""
    cfg = make_config("model=lora", "model.lora.dropout=0.0")
    tokenizer = load_tokenizer(cfg.backbone, cfg.paths.cache_dir)
    torch.manual_seed(0)
    model = build_model(cfg.model, resolve_backbone(cfg.backbone, cfg.paths.cache_dir), tokenizer, head=cfg.head)
    batch = tokenizer(list(np.array(TEXTS)[indices]), padding=True, return_tensors="pt")
    labels = torch.tensor(LABELS[indices])
    with torch.no_grad():
        losses = torch.nn.functional.cross_entropy(model(**batch).logits.float(), labels, reduction="none")
    w = torch.tensor(weights)[labels]
    if example_weights is not None:
        w = w * torch.tensor(example_weights[indices], dtype=torch.float32)
    return float((w * losses).sum() / w.sum()), float(losses.mean())


@pytest.mark.parametrize("imbalance", ["weighted", "none"])
def test_gradient_accumulation_is_exact(make_config, tmp_path, imbalance):
    big, big_grads, trainer = _train_one_step(make_config, tmp_path, batch_size=8, accumulation=1, imbalance=imbalance)
    small, small_grads, _ = _train_one_step(make_config, tmp_path, batch_size=4, accumulation=2, imbalance=imbalance)
    weighted, plain = _expected_loss(make_config, trainer.imbalance.class_weights)
    assert big["loss"] == pytest.approx(weighted, rel=1e-4)
    assert small["loss"] == pytest.approx(weighted, rel=1e-4)  # not GA times too big
    assert small["loss_unweighted"] == pytest.approx(plain, rel=1e-4)
    assert set(big_grads) == set(small_grads) and any("score" in n for n in big_grads)
    for name, grad in big_grads.items():
        torch.testing.assert_close(small_grads[name], grad, rtol=1e-4, atol=1e-7, msg=name)


def test_ipcw_weights_multiply_the_class_weights_exactly_under_accumulation(make_config, tmp_path):
    """task.censoring=ipcw: each example's loss weight is its class weight times its IPCW weight (the censored weigh
    0), normalised by their sum over the whole accumulated batch; inverse-frequency class weights from the weighted
    counts."""
    big, big_grads, trainer = _train_one_step(make_config, tmp_path, batch_size=8, accumulation=1, example_weights=IPCW)
    small, small_grads, _ = _train_one_step(make_config, tmp_path, batch_size=2, accumulation=4, example_weights=IPCW)
    n, cases = IPCW.sum(), IPCW @ LABELS
    assert trainer.imbalance.class_weights == pytest.approx((n / (2 * (n - cases)), n / (2 * cases)))
    weighted, plain = _expected_loss(make_config, trainer.imbalance.class_weights, example_weights=IPCW)
    unweighted_by_ipcw, _ = _expected_loss(make_config, trainer.imbalance.class_weights)
    assert abs(weighted - unweighted_by_ipcw) > 1e-4  # the IPCW weights change the loss
    assert big["loss"] == pytest.approx(weighted, rel=1e-4) and small["loss"] == pytest.approx(weighted, rel=1e-4)
    assert small["loss_unweighted"] == pytest.approx(plain, rel=1e-4)
    for name, grad in big_grads.items():
        torch.testing.assert_close(small_grads[name], grad, rtol=1e-4, atol=1e-7, msg=name)


def test_weighted_loss_is_not_plain_loss(make_config):
    weights = (8 / 12, 8 / 4)
    weighted, plain = _expected_loss(make_config, weights)
    assert abs(weighted - plain) > 1e-3


def test_evaluation_does_not_count_as_training(make_config, tmp_path):
    """transformers 5.x hands num_items_in_batch to compute_loss in evaluation too: the validation batches between
    two logged steps must not enter the second step's training loss. Learning rate 0 keeps the model at init, so
    every step's logged loss is the full-batch loss at init; the validation set (3 records) has a different mean."""
    trainer = _trainer(
        make_config,
        tmp_path / "ckpt",
        "train.batch_size=4",
        "train.gradient_accumulation_steps=2",
        "train.max_steps=2",
        "train.eval_steps=1",
        "train.save_steps=1",
        eval_indices=slice(0, 3),
        learning_rate=0.0,
    )
    trainer.train()
    weights = trainer.imbalance.class_weights
    weighted, plain = _expected_loss(make_config, weights)
    val_weighted, val_plain = _expected_loss(make_config, weights, slice(0, 3))
    assert abs(val_plain - plain) > 1e-3  # evaluation batches mixed in would show
    steps = [entry for entry in trainer.state.log_history if "loss" in entry]
    evaluations = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    assert [e["step"] for e in steps] == [1, 2] and [e["step"] for e in evaluations] == [1, 2]
    for entry in steps:  # step 2 is logged after the evaluation of step 1
        assert entry["loss"] == pytest.approx(weighted, rel=1e-4)
        assert entry["loss_unweighted"] == pytest.approx(plain, rel=1e-4)
    assert evaluations[0]["eval_loss"] == pytest.approx(val_weighted, rel=1e-4)


def test_validation_during_training_is_ipcw_weighted():
    """Under task.censoring=ipcw the Trainer hands (labels, weights) to compute_metrics (label_names), and the AUROC
    that chooses the checkpoint is the weighted one."""
    from sklearn.metrics import roc_auc_score
    from transformers import EvalPrediction

    prob = np.array([0.9, 0.2, 0.8, 0.3, 0.1, 0.4, 0.7, 0.6])
    logits = np.log(np.column_stack([1 - prob, prob]))
    plain = classification_metrics(EvalPrediction(predictions=logits, label_ids=LABELS))
    weighted = classification_metrics(EvalPrediction(predictions=logits, label_ids=(LABELS, IPCW)))
    assert plain["auroc"] == pytest.approx(roc_auc_score(LABELS, prob))
    assert weighted["auroc"] == pytest.approx(roc_auc_score(LABELS, prob, sample_weight=IPCW))
    assert weighted["auroc"] != pytest.approx(plain["auroc"])
