"""Benchmark: per-step time and memory per rank for zero=none|2|3 with 2 CPU processes, side by side.

    .venv/bin/python bench/zero_steps.py [--backbones tiny smollm2_135m] [--workdir outputs/bench/zero]

Each configuration is one real `cadft train` run on 2 ranks (OMP_NUM_THREADS=1 per rank) on a small synthetic cohort:
`torchrun --nproc_per_node 2 bench/zero_steps.py --rank OVERRIDES`, where each rank runs `cadft train OVERRIDES`
(cadft.cli.train) with this file's StepTimer added to its trainer's callbacks. StepTimer times every optimizer step
and, when training ends, writes the rank's median step time (the first steps are warm-up and left out), its peak RSS
(ru_maxrss, loading included) and its RSS then (what training holds).
zero=none with two processes is plain DDP. Prints a table. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil
from transformers import TrainerCallback

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RANKS = 2
WARMUP_STEPS = 2
TIMINGS_ENV = "CADFT_BENCH_TIMINGS_DIR"
RANK_FLAG = "--rank"  # bench/zero_steps.py --rank OVERRIDES: one rank of a run (rank_main)
# LoRA on both backbones; batch size per rank and optimizer steps (SmolLM2: a few steps at batch 4).
BATCH = {"tiny": 8, "smollm2_135m": 4}
STEPS = {"tiny": 12, "smollm2_135m": 6}
FEATURES = "text.features=[age,sex,systolic_bp,cholesterol,hdl,smoking,diabetes,bp_medication]"


class StepTimer(TrainerCallback):
    def __init__(self):
        self.folder = Path(os.environ[TIMINGS_ENV])
        self.seconds: list[float] = []
        self.started = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(time.perf_counter() - self.started)

    def on_train_end(self, args, state, control, **kwargs):
        timed = self.seconds[WARMUP_STEPS:] or self.seconds
        record = {
            "step_s": statistics.median(timed),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "end_rss_gb": psutil.Process().memory_info().rss / 2**30,
        }
        (self.folder / f"rank{args.process_index}.json").write_text(json.dumps(record))


def rank_main(argv: list[str]) -> None:
    """One rank under torchrun: `cadft train ARGV` with a StepTimer in the trainer's callbacks."""
    from cadft.cli.train import main as train
    from cadft.train.trainer import CadftTrainer

    init = CadftTrainer.__init__

    def with_timer(self, *args, callbacks=None, **kwargs):
        init(self, *args, callbacks=[*(callbacks or []), StepTimer()], **kwargs)

    CadftTrainer.__init__ = with_timer
    train(argv)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["tiny", "smollm2_135m"])
    parser.add_argument("--workdir", type=Path, default=ROOT / "outputs" / "bench" / "zero")
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    extract = _cohort(workdir)
    rows = []
    for backbone in args.backbones:
        for stage in ("none", "2", "3"):
            rows.append(_run(workdir, extract, backbone, stage, STEPS[backbone]))
            print(_format(rows[-1]), flush=True)
    print(
        f"\nLoRA, {RANKS} CPU processes, OMP_NUM_THREADS=1, median step time after {WARMUP_STEPS} warm-up steps; "
        "RSS at the end of training and peak RSS (GiB)"
    )
    print(
        f"{'backbone':<14}{'zero':<6}{'batch/rank':>11}{'steps':>6}{'step ms r0':>12}{'step ms r1':>12}"
        f"{'end r0':>8}{'end r1':>8}{'peak r0':>9}{'peak r1':>9}{'run s':>7}"
    )
    for row in rows:
        print(_format(row))


def _cohort(workdir: Path) -> Path:
    """A small cohort, so the final scoring of validation and test (not timed) stays short for SmolLM2."""
    extract = workdir / "cohort" / "ukb_synthetic.csv"
    if not extract.is_file():
        subprocess.run(
            [sys.executable, "-m", "cadft", "synth", "--n", "1000", "--seed", "0", "--out", str(extract)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return extract


def _run(workdir: Path, extract: Path, backbone: str, stage: str, steps: int) -> dict:
    timings = workdir / "timings" / f"{backbone}-{stage}"
    timings.mkdir(parents=True, exist_ok=True)
    for old in timings.glob("rank*.json"):
        old.unlink()
    overrides = [
        f"backbone={backbone}",
        "model=lora",
        f"zero={stage}",
        f"data.path={extract}",
        f"data.oracle_path={extract.with_suffix('.oracle.csv')}",
        FEATURES,
        f"paths.output_dir={workdir / 'runs'}",
        f"train.batch_size={BATCH[backbone]}",
        f"train.max_steps={steps}",
        f"train.eval_steps={steps}",
        f"train.save_steps={steps}",
        f"train.logging_steps={steps}",
        "train.max_length=128",
        f"train.max_train_examples={steps * BATCH[backbone] * RANKS}",
        "train.max_eval_examples=32",
        "eval.bootstrap=10",
        "eval.plots=false",
    ]
    env = os.environ | {
        "OMP_NUM_THREADS": "1",
        TIMINGS_ENV: str(timings),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "TOKENIZERS_PARALLELISM": "false",
    }
    started = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "torchrun"), "--nproc_per_node", str(RANKS), str(Path(__file__).resolve()), RANK_FLAG, *overrides],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{backbone} zero={stage} failed:\n{(done.stdout + done.stderr)[-4000:]}")
    ranks = [json.loads((timings / f"rank{r}.json").read_text()) for r in range(RANKS)]
    return {
        "backbone": backbone,
        "zero": stage,
        "batch": BATCH[backbone],
        "steps": steps,
        "ranks": ranks,
        "seconds": seconds,
    }


def _format(row: dict) -> str:
    r0, r1 = row["ranks"]
    return (
        f"{row['backbone']:<14}{row['zero']:<6}{row['batch']:>11}{row['steps']:>6}"
        f"{r0['step_s'] * 1000:>12.0f}{r1['step_s'] * 1000:>12.0f}"
        f"{r0['end_rss_gb']:>8.2f}{r1['end_rss_gb']:>8.2f}{r0['peak_rss_gb']:>9.2f}{r1['peak_rss_gb']:>9.2f}"
        f"{row['seconds']:>7.0f}"
    )


if __name__ == "__main__":
    if sys.argv[1:2] == [RANK_FLAG]:
        rank_main(sys.argv[2:])
    else:
        main()
