"""The trainer's loss: class-weighted, fp32, and exact under gradient accumulation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import DataCollatorWithPadding, TrainerCallback

from cadft.backbone import load_tokenizer, resolve_backbone
from cadft.dataset import TokenizedSplit
from cadft.imbalance import resolve
from cadft.model import build_model
from cadft.trainer import CadftTrainer, build_training_arguments, classification_metrics

TEXTS = [f"The age at recruitment is {40 + 3 * i} years. The sex is {'Male' if i % 2 else 'Female'}." + " x" * (i % 3) for i in range(8)]
LABELS = np.array([1, 0, 0, 0, 0, 1, 0, 0])


class GradientCapture(TrainerCallback):
    """Gradients of the trained weights just before the first optimizer step."""

    def __init__(self):
        self.grads = None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self.grads is None:
            self.grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


def _train_one_step(make_config, tmp_path, *, batch_size, accumulation, imbalance="weighted"):
    cfg = make_config("model=lora", "model.lora.dropout=0.0", f"imbalance={imbalance}", f"train.batch_size={batch_size}",
                      f"train.gradient_accumulation_steps={accumulation}", "train.max_steps=1", "train.logging_steps=1",
                      "train.max_grad_norm=1e9", "train.warmup_ratio=0.0")
    tokenizer = load_tokenizer(cfg.backbone, cfg.paths.cache_dir)
    torch.manual_seed(0)
    model = build_model(cfg.model, resolve_backbone(cfg.backbone, cfg.paths.cache_dir), tokenizer)
    data = TokenizedSplit("train", np.arange(8), LABELS, tokenizer(TEXTS)["input_ids"], 0)
    capture = GradientCapture()
    trainer = CadftTrainer(
        model=model, args=build_training_arguments(cfg, tmp_path / f"ckpt-{batch_size}-{accumulation}", "cpu"),
        train_dataset=data, eval_dataset=data, data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer,
        imbalance=resolve(cfg.imbalance, LABELS), sampler_seed=0, callbacks=[capture], compute_metrics=classification_metrics,
    )
    trainer.train()
    logged = next(entry for entry in trainer.state.log_history if "loss" in entry)
    return logged, capture.grads, trainer


def _expected_loss(make_config, weights):
    """The full-batch weighted mean cross-entropy, computed directly from the model at init."""
    cfg = make_config("model=lora", "model.lora.dropout=0.0")
    tokenizer = load_tokenizer(cfg.backbone, cfg.paths.cache_dir)
    torch.manual_seed(0)
    model = build_model(cfg.model, resolve_backbone(cfg.backbone, cfg.paths.cache_dir), tokenizer)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        losses = torch.nn.functional.cross_entropy(model(**batch).logits.float(), torch.tensor(LABELS), reduction="none")
    w = torch.tensor(weights)[torch.tensor(LABELS)]
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


def test_weighted_loss_is_not_plain_loss(make_config):
    weights = (8 / 12, 8 / 4)
    weighted, plain = _expected_loss(make_config, weights)
    assert abs(weighted - plain) > 1e-3
