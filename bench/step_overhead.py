"""Benchmark: cadft's training step against a bare transformers + peft loop on the same batch, side by side.

    .venv/bin/python bench/step_overhead.py [--backbone smollm2_135m|tiny] [--steps 12] [--warmup 3] [--rounds 2]

Both sides build the same LoRA model (cadft.train.model.build_model, the demo's settings: r=16 on every linear layer,
fp32 on CPU; the classifier head, which reads the record text as it is) from the same seed and train on the same 8
demo records (9 features, the demo's text) for the same number of steps:
- bare: a plain loop: pad the batch, forward, cross-entropy, backward, AdamW step, zero_grad;
- cadft: CadftTrainer (class-weighted loss normalised over the accumulated batch, the length-grouping sampler,
  the logging of the unweighted loss and examples/s), driven by trainer.train() with evaluation and saving off.
Each round measures both, alternating, after `--warmup` steps; reported: median seconds per step of each and their
ratio (target: cadft within 1.15x of bare).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
DEMO_FEATURES = "[age,sex,systolic_bp,cholesterol,hdl,smoking,diabetes,bp_medication,family_heart_disease]"


def demo_config(backbone: str, steps: int):
    """The demo's typed config (what the stages take) with the classifier head on both sides: the bare loop feeds the
    record text as it is, which is what cadft's classifier head trains on."""
    from cadft.cli.synth import main as synth
    from cadft.config.compose import compose
    from cadft.config.schema import CLASSIFIER
    from cadft.config.validate import validate, with_absolute_paths

    work = ROOT / "outputs" / "bench" / "step_overhead"
    extract = work / "ukb_synthetic.csv"
    if not extract.is_file():
        synth(["--n", "2000", "--seed", "4", "--out", str(extract)])
    overrides = [
        f"data.path={extract}",
        f"paths.output_dir={work}",
        f"backbone={backbone}",
        "+experiment=demo",
        f"text.features={DEMO_FEATURES}",
        f"train.max_steps={steps}",
        "tracking.enabled=false",
    ]
    return replace(with_absolute_paths(validate(compose("config", overrides))), head=CLASSIFIER)


def fresh_model(config, tokenizer):
    from transformers import set_seed

    from cadft.train.backbone import resolve_backbone
    from cadft.train.model import build_model

    set_seed(0)
    backbone_path = resolve_backbone(config.backbone, config.paths.cache_dir)
    return build_model(config.model, backbone_path, tokenizer, head=config.head, device="cpu")


def bare_steps(config, tokenizer, texts: list[str], labels: np.ndarray, steps: int) -> list[float]:
    model = fresh_model(config, tokenizer)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.model.learning_rate)
    target = torch.as_tensor(labels, dtype=torch.long)  # the prepared table stores labels as Int8
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        batch = tokenizer(texts, padding=True, truncation=True, max_length=config.train.max_length, return_tensors="pt")
        loss = torch.nn.functional.cross_entropy(model(**batch).logits.float(), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    return times


def cadft_steps(config, tokenizer, table, steps: int) -> list[float]:
    from transformers import DataCollatorWithPadding, TrainerCallback

    from cadft.train.dataset import tokenize_split
    from cadft.train.imbalance import resolve_imbalance
    from cadft.train.trainer import CadftTrainer, build_training_arguments

    class StepClock(TrainerCallback):
        def __init__(self):
            self.times, self.started = [], 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self.started)

    train_set = tokenize_split(table, "train", tokenizer, config.train.max_length, config.head)
    clock = StepClock()
    with tempfile.TemporaryDirectory() as folder:
        args = build_training_arguments(config, Path(folder), "cpu")
        args.eval_strategy, args.save_strategy, args.load_best_model_at_end, args.logging_steps = "no", "no", False, 10
        trainer = CadftTrainer(
            model=fresh_model(config, tokenizer),
            args=args,
            train_dataset=train_set,
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
            imbalance=resolve_imbalance(config.imbalance, train_set.labels),
            sampler_seed=0,
            callbacks=[clock],
        )
        trainer.train()
    return clock.times


def main() -> None:
    import polars as pl

    from cadft.data.prepare import prepare
    from cadft.train.backbone import load_tokenizer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="smollm2_135m")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    total = args.steps + args.warmup
    config = demo_config(args.backbone, total)
    tokenizer = load_tokenizer(config.backbone, config.paths.cache_dir)
    train = prepare(config).table().filter(pl.col("split") == "train")
    batch = pl.concat([train.filter(pl.col("label") == 1).head(2), train.filter(pl.col("label") == 0).head(6)])
    table = pl.concat([batch] * total)  # the same 8 records every step (the sampler only reorders them)
    bare, cadft = [], []
    for _ in range(args.rounds):
        bare += bare_steps(config, tokenizer, batch["text"].to_list(), batch["label"].to_numpy(), total)[args.warmup :]
        cadft += cadft_steps(config, tokenizer, table, total)[args.warmup :]
    b, c = statistics.median(bare), statistics.median(cadft)
    print(
        f"backbone {args.backbone}, batch 8 demo records, {args.steps} timed steps x {args.rounds} rounds, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"bare transformers+peft loop: {b:.3f} s/step (median)")
    print(f"cadft CadftTrainer:          {c:.3f} s/step (median)")
    print(f"ratio cadft / bare: {c / b:.3f} (target <= 1.15)")


if __name__ == "__main__":
    main()
