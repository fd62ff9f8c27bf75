"""Device check on one CUDA GPU: every strategy x ZeRO stage through the real CLI, then SmolLM2-135M-sized throughput.

    python bench/gpu_check.py [--workdir outputs/bench/gpu] [--parallel 3] [--tokenizer DIR]

Part 1, tiny backbone on a 2,000-participant synthetic cohort: model=lora|qlora|full x zero=none|2|3, each a real
`cadft train` run on train.device=cuda (lora/full: bf16 weights; qlora: NF4 with bf16 compute and
paged_adamw_32bit; zero=2|3: torchrun with one process over nccl), a few steps; then `cadft eval` rescoring the
saved model, whose probabilities must equal the ones the run wrote (save -> reload keeps the logits).
Part 2, SmolLM2-135M's architecture with random weights (the real ones are a 100 MB+ download the device machine
cannot fetch) and its tokenizer (--tokenizer: a folder with tokenizer.json and config.json, by default the
converted SmolLM2 in the cadft cache) on the 8,000-participant demo cohort: lora, qlora and full at batch 32,
one at a time: training and scoring examples/s and peak GPU memory.
Needs a CUDA GPU. Not a test. Prints a table and writes results.json to the workdir.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STRATEGIES = ("lora", "qlora", "full")
STAGES = ("none", "2", "3")
# Probabilities from the run's own scoring vs a fresh process loading the saved model: bf16 kernels may pick other
# algorithms in another process, so a small difference is allowed and reported.
RELOAD_TOLERANCE = 2e-3


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def cadft(command: str, *args: str) -> list[str]:
    """`cadft COMMAND ARGS` through the front door, in this interpreter."""
    return python_module("cadft", command, *args)


def run(cmd: list[str], log: Path) -> tuple[int, float, str]:
    started = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.run(
            cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=os.environ | {"PYTHONUNBUFFERED": "1"}
        )
    return proc.returncode, time.perf_counter() - started, log.read_text()


def probabilities(predictions: Path) -> list[float]:
    return [json.loads(line)["prob"] for line in predictions.read_text().splitlines()]


def tiny_run(strategy: str, stage: str, common: list[str], workdir: Path, port: int) -> dict:
    run_dir = workdir / f"tiny-{strategy}-zero{stage}"
    overrides = [*common, f"model={strategy}", f"zero={stage}", f"hydra.run.dir={run_dir}"]
    launcher = (
        python_module("torch.distributed.run")
        + ["--nproc_per_node", "1", "--master_port", str(port), "-m", "cadft", "train"]
        if stage != "none"
        else cadft("train")
    )
    rc, seconds, output = run([*launcher, *overrides], workdir / f"tiny-{strategy}-zero{stage}.log")
    result = {"part": "tiny", "strategy": strategy, "zero": stage, "rc": rc, "seconds": round(seconds, 1)}
    if rc != 0:
        result["error"] = output[-2000:]
        return result
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    result["test_auroc"] = round(metrics["test"]["auroc"], 4)
    result["peak_memory_gib"] = _peak_memory(output)
    result["saved"] = sorted(p.name for p in (run_dir / "model").iterdir())
    result["checkpoint_info"] = json.loads((run_dir / "model" / "cadft_model.json").read_text())
    rc, _, output = run(
        cadft("eval", str(run_dir), "--out", str(run_dir / "reeval"), "--device", "cuda"),
        workdir / f"tiny-{strategy}-zero{stage}.eval.log",
    )
    if rc != 0:
        result["reload_error"] = output[-2000:]
        return result
    before = probabilities(run_dir / "eval" / "predictions.jsonl")
    after = probabilities(run_dir / "reeval" / "predictions.jsonl")
    result["reload_max_abs_diff"] = max(abs(a - b) for a, b in zip(before, after, strict=True))
    result["reload_ok"] = result["reload_max_abs_diff"] <= RELOAD_TOLERANCE
    return result


def _peak_memory(output: str) -> float | None:
    found = re.findall(r"peak memory\s*│?\s*([\d.]+) GiB", output)  # cadft train's summary: "peak memory 1.23 GiB"
    return float(found[-1]) if found else None


def _last(output: str, key: str) -> float | None:
    found = re.findall(rf"'{key}': '([\d.]+)'", output)
    return float(found[-1]) if found else None


def smollm2_shaped_backbone(tokenizer_dir: Path, workdir: Path) -> Path:
    """SmolLM2-135M's config and tokenizer with random weights, saved as a normal HF folder."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = workdir / "smollm2_135m_random"
    if not (folder / "config.json").exists():
        config = AutoConfig.from_pretrained(tokenizer_dir)
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).save_pretrained(folder)
        AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(folder)
    return folder


def default_tokenizer_dir() -> Path | None:
    found = sorted(Path.home().glob(".cache/cadft/backbones/smollm2_135m-*/tokenizer.json"))
    return found[-1].parent if found else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=ROOT / "outputs" / "bench" / "gpu")
    parser.add_argument("--parallel", type=int, default=3, help="tiny runs at once (they share the GPU)")
    parser.add_argument("--tokenizer", type=Path, default=default_tokenizer_dir())
    parser.add_argument("--skip-tiny", action="store_true")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device")
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    results = [{"device": torch.cuda.get_device_name(0), "torch": torch.__version__}]

    def record(rows: list[dict]) -> None:
        """Written as it goes: a check cut short by a time limit keeps what it measured."""
        results.extend(rows)
        (workdir / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")

    cohorts = {n: workdir / f"cohort{n}.csv" for n in (2000, 8000)}
    for n, path in cohorts.items():
        if not path.exists():
            subprocess.run(cadft("synth", "--n", str(n), "--seed", "0", "--out", str(path)), cwd=ROOT, check=True)
    base = [f"paths.output_dir={workdir}/outputs", "tracking.enabled=false", "train.device=cuda", "data=synthetic"]

    if not args.skip_tiny:
        common = [
            *base,
            "backbone=tiny",
            f"data.path={cohorts[2000]}",
            "train.max_steps=6",
            "train.eval_steps=6",
            "train.save_steps=6",
            "train.batch_size=8",
            "eval.bootstrap=50",
            "eval.plots=false",
        ]
        subprocess.run(
            cadft("prepare", *[o for o in common if not o.startswith(("train.", "eval.", "tracking."))]),
            cwd=ROOT,
            check=True,
        )  # once, before the parallel runs read the cache
        jobs = [(s, z) for s in STRATEGIES for z in STAGES]
        with ThreadPoolExecutor(args.parallel) as pool:
            record(list(pool.map(lambda job: tiny_run(*job[1], common, workdir, 29600 + job[0]), enumerate(jobs))))

    if args.tokenizer is None:
        sys.exit("gpu_check: no SmolLM2 tokenizer folder: pass --tokenizer")
    backbone = smollm2_shaped_backbone(args.tokenizer, workdir)
    for strategy in STRATEGIES:
        run_dir = workdir / f"smollm2-{strategy}"
        overrides = [
            *base,
            "+experiment=demo",
            "backbone=hf",
            "backbone.name=smollm2_135m_random",
            f"backbone.path={backbone}",
            f"data.path={cohorts[8000]}",
            f"model={strategy}",
            "train.batch_size=32",
            "train.eval_batch_size=64",
            "train.max_train_examples=4096",
            "train.eval_steps=128",
            "train.save_steps=128",
            f"hydra.run.dir={run_dir}",
        ]
        rc, seconds, output = run(cadft("train", *overrides), workdir / f"smollm2-{strategy}.log")
        result = {
            "part": "smollm2_135m_random",
            "strategy": strategy,
            "rc": rc,
            "seconds": round(seconds, 1),
            "train_examples_per_s": _last(output, "train_samples_per_second"),
            "eval_examples_per_s": _last(output, "eval_samples_per_second"),
            "peak_memory_gib": _peak_memory(output),
        }
        if rc != 0:
            result["error"] = output[-2000:]
        record([result])
    for row in results:
        print({k: v for k, v in row.items() if k not in ("error", "reload_error", "checkpoint_info", "saved")})
        for key in ("error", "reload_error"):
            if key in row:
                print(f"--- {key}:\n{row[key]}")


if __name__ == "__main__":
    main()
