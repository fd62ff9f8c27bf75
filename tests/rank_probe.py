"""A TrainerCallback the multi-process tests (tests/train/test_zero.py) load into cadft train through
tests/probed_cli.py (CADFT_TEST_CALLBACKS).

It writes into CADFT_PROBE_DIR:
- `rank<R>.json` when training starts: the training-set indices of every batch this rank's data loader yields in
  the first epoch (what this rank trains on), with the training labels;
- `logits.json` (rank 0) when training ends: the in-memory model's logits for the first training examples. Every
  rank runs that forward pass, because under ZeRO-3 it gathers the weights from all of them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from transformers import DataCollatorWithPadding, TrainerCallback

PROBE_DIR_ENV = "CADFT_PROBE_DIR"
LOGIT_EXAMPLES = 8


class RankProbe(TrainerCallback):
    def __init__(self):
        self.folder = Path(os.environ[PROBE_DIR_ENV])
        self.folder.mkdir(parents=True, exist_ok=True)

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        batches = [[int(i) for i in batch] for batch in train_dataloader.batch_sampler]
        record = {"world_size": args.world_size, "batches": batches, "labels": train_dataloader.dataset.labels.tolist()}
        (self.folder / f"rank{args.process_index}.json").write_text(json.dumps(record))

    def on_train_end(self, args, state, control, model=None, processing_class=None, train_dataloader=None, **kwargs):
        dataset = train_dataloader.dataset
        batch = DataCollatorWithPadding(processing_class)(
            [{"input_ids": dataset.input_ids[i]} for i in range(LOGIT_EXAMPLES)]
        )
        was_training = model.training
        model.eval()
        with torch.no_grad():
            logits = model(**batch.to(args.device)).logits.float().cpu()
        model.train(was_training)
        if args.process_index == 0:
            record = {
                "input_ids": batch["input_ids"].tolist(),
                "attention_mask": batch["attention_mask"].tolist(),
                "logits": logits.tolist(),
            }
            (self.folder / "logits.json").write_text(json.dumps(record))
