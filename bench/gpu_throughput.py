"""GPU throughput and precision of the demo's path (SmolLM2-135M-Instruct, LoRA, head=verbalizer), with cadft's code.

    python bench/gpu_throughput.py [--records 4096] [--score-batches 32 128 512 1024] [--train-batches 8 32 128]
                                   [--train-steps 12] [--warmup 3] [--out outputs/bench/gpu_throughput/results.json]
                                   [--device cuda] [--backbone smollm2_135m]
    (a dry run of the script on CPU: --device cpu --backbone tiny --records 64 --score-batches 16 --train-batches 4)

Records: the demo's text (9 features) inside the verbalizer prompt, from the 8,000-participant demo cohort.
Scoring: cadft.eval.score.score_texts (length-sorted batches) on the LoRA model with its adapters merged
(cadft.train.model.merged_for_scoring), as cadft train, cadft eval and cadft predict score, at each batch size, with
  bf16  weights in bf16 (model.dtype=auto on CUDA),
  fp32  weights in fp32,
  fp32+autocast  fp32 weights under bf16 autocast (what score_texts did on CUDA before 2026-12-04).
Each is compared with fp32 on the same records (Spearman rank correlation, largest probability difference): the
untrained verbalizer is the zero-shot baseline, whose ranking bf16 was seen to scramble on CPU.
Training: CadftTrainer steps (class-weighted loss, length-grouped sampler, bf16 weights) at each batch size, timed
with CUDA synchronised, median after warm-up.
Also: lora, qlora and full on the tiny backbone each score on CUDA without autocast (a dtype check, not a timing).
Targets on one H200: >= 2,000 scored and >= 600 trained examples per second at ~100 tokens.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "outputs" / "bench" / "gpu_throughput"
DEVICE = "cuda"  # --device


def synchronize() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def peak_gib() -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if DEVICE == "cuda" else None


def reset_peak() -> None:
    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()


def demo_config(*overrides: str):
    """The demo's typed config (what the stages take) on the 8,000-participant demo cohort."""
    from cadft.cli.synth import main as synth
    from cadft.config.compose import compose
    from cadft.config.validate import validate, with_absolute_paths

    extract = WORK / "ukb_synthetic.csv"
    if not extract.is_file():
        synth(["--n", "8000", "--seed", "0", "--out", str(extract)])
    composed = compose(
        "config",
        [
            f"data.path={extract}",
            f"paths.output_dir={WORK}",
            "+experiment=demo",
            "tracking.enabled=false",
            f"train.device={DEVICE}",
            *overrides,
        ],
    )
    return with_absolute_paths(validate(composed))


def build(config, tokenizer, dtype: str):
    """The demo's LoRA model as cadft train builds it, its weights in `dtype`."""
    from transformers import set_seed

    from cadft.train.backbone import resolve_backbone
    from cadft.train.model import build_model

    set_seed(0)
    return build_model(
        replace(config.model, dtype=dtype),
        resolve_backbone(config.backbone, config.paths.cache_dir),
        tokenizer,
        head=config.head,
        device=DEVICE,
        trust_remote_code=config.backbone.trust_remote_code,
    )


def timed_scores(
    model, tokenizer, config, texts: list[str], batch_size: int, autocast: bool
) -> tuple[np.ndarray, float]:
    from contextlib import nullcontext

    from cadft.eval.score import score_texts

    context = torch.autocast(DEVICE, dtype=torch.bfloat16) if autocast else nullcontext()
    with context:
        score_texts(
            model,
            tokenizer,
            texts[:batch_size],
            head=config.head,
            batch_size=batch_size,
            max_length=config.train.max_length,
            device=DEVICE,
        )  # warm-up: kernels, allocator
        synchronize()
        started = time.perf_counter()
        probs = score_texts(
            model,
            tokenizer,
            texts,
            head=config.head,
            batch_size=batch_size,
            max_length=config.train.max_length,
            device=DEVICE,
        )
        synchronize()
    return probs, time.perf_counter() - started


def scoring(config, tokenizer, texts: list[str], batches: list[int]) -> list[dict]:
    from scipy.stats import spearmanr

    from cadft.train.model import merged_for_scoring

    rows, reference = [], None
    for name, dtype, autocast in (("fp32", "fp32", False), ("bf16", "bf16", False), ("fp32+autocast", "fp32", True)):
        model = merged_for_scoring(build(config, tokenizer, dtype).eval())
        for batch_size in batches:
            reset_peak()
            probs, seconds = timed_scores(model, tokenizer, config, texts, batch_size, autocast)
            reference = probs if reference is None else reference
            rows.append(
                {
                    "part": "score",
                    "precision": name,
                    "batch": batch_size,
                    "examples_per_s": round(len(texts) / seconds, 1),
                    "spearman_vs_fp32": round(float(spearmanr(probs, reference).statistic), 4),
                    "max_abs_diff_vs_fp32": float(np.abs(probs - reference).max()),
                    "peak_gib": peak_gib(),
                }
            )
            print(rows[-1], flush=True)
        del model
    return rows


def training(config, tokenizer, table, batch_size: int, steps: int, warmup: int) -> dict:
    import polars as pl
    from transformers import DataCollatorWithPadding, TrainerCallback

    from cadft.train.dataset import tokenize_split
    from cadft.train.imbalance import resolve_imbalance
    from cadft.train.model import resolve_dtype
    from cadft.train.trainer import CadftTrainer, build_training_arguments

    class StepClock(TrainerCallback):
        def __init__(self):
            self.times, self.started = [], 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            synchronize()
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            synchronize()
            self.times.append(time.perf_counter() - self.started)

    n = batch_size * (steps + warmup)
    cases = table.filter(pl.col("label") == 1).head(n // 2)  # case-enriched, like the demo's all_cases sample
    rows = pl.concat([cases, table.filter(pl.col("label") == 0).head(n - cases.height)])
    train_set = tokenize_split(rows, "train", tokenizer, config.train.max_length, config.head)
    clock = StepClock()
    reset_peak()
    with tempfile.TemporaryDirectory() as folder:
        args = build_training_arguments(config, Path(folder), DEVICE)
        args.per_device_train_batch_size, args.max_steps = batch_size, steps + warmup
        args.eval_strategy, args.save_strategy, args.load_best_model_at_end, args.logging_steps = (
            "no",
            "no",
            False,
            10**6,
        )
        trainer = CadftTrainer(
            model=build(config, tokenizer, "auto"),
            args=args,
            train_dataset=train_set,
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
            imbalance=resolve_imbalance(config.imbalance, train_set.labels),
            sampler_seed=0,
            callbacks=[clock],
        )
        trainer.train()
    step = statistics.median(clock.times[warmup:])
    return {
        "part": "train",
        "precision": str(resolve_dtype("auto", DEVICE)).removeprefix("torch."),
        "batch": batch_size,
        "seconds_per_step": round(step, 4),
        "examples_per_s": round(batch_size / step, 1),
        "tokens_per_record": round(float(np.mean(train_set.lengths)), 1),
        "peak_gib": peak_gib(),
    }


def strategies_score_without_autocast(texts: list[str]) -> list[dict]:
    from cadft.eval.score import score_texts
    from cadft.train.backbone import load_tokenizer
    from cadft.train.model import merged_for_scoring

    rows = []
    for strategy in ("lora", "qlora", "full"):
        config = demo_config("backbone=tiny", f"model={strategy}")
        tokenizer = load_tokenizer(config.backbone, config.paths.cache_dir)
        try:
            model = merged_for_scoring(build(config, tokenizer, "auto").eval())
            probs = score_texts(
                model, tokenizer, texts[:64], head=config.head, batch_size=32, max_length=128, device=DEVICE
            )
            rows.append({"part": "dtype_check", "strategy": strategy, "ok": bool(np.isfinite(probs).all())})
        except Exception as err:
            rows.append(
                {
                    "part": "dtype_check",
                    "strategy": strategy,
                    "ok": False,
                    "error": f"{type(err).__name__}: {err}"[:500],
                }
            )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    import polars as pl

    from cadft.data.prepare import prepare
    from cadft.train.backbone import load_tokenizer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=4096)
    parser.add_argument("--score-batches", type=int, nargs="+", default=[32, 128, 512, 1024])
    parser.add_argument("--train-batches", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--train-steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, default=WORK / "results.json")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--backbone", default="smollm2_135m")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_throughput: no CUDA device")
    name = torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu"
    results = [{"device": name, "torch": torch.__version__, "backbone": args.backbone}]

    def record(rows: list[dict]) -> None:  # written as it goes: a run cut short keeps what it measured
        results.extend(rows)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")

    config = demo_config(f"backbone={args.backbone}")
    tokenizer = load_tokenizer(config.backbone, config.paths.cache_dir)
    table = prepare(config).table().filter(pl.col("split") != "test").sample(fraction=1.0, shuffle=True, seed=0)
    texts = table["text"].head(args.records).to_list()
    record(strategies_score_without_autocast(texts))
    record(scoring(config, tokenizer, texts, args.score_batches))
    for batch_size in args.train_batches:
        record([training(config, tokenizer, table, batch_size, args.train_steps, args.warmup)])
        print(results[-1], flush=True)


if __name__ == "__main__":
    main()
