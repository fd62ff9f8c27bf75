"""Benchmark: `cadft predict` peak memory and time against the number of participants, on synthetic extracts.

    .venv/bin/python bench/predict_memory.py [--sizes 2000 20000 100000 502000] [--workdir outputs/bench/predict]
                                             [--cadft PROGRAM] [--batch-size 32]

Trains one run on the tiny backbone (a random 2-layer model with a 512-token byte-level tokenizer: its scores mean
nothing, but records, tokenisation, batches and the CSV are those of a real run, with every feature of the shipped
text template: the memory shape), then applies it with `cadft predict` to a synthetic extract of each size (cadft
synth, seed 1, written once per size and kept). Each predict runs in its own process: its peak RSS is that process's
own (ru_maxrss of the child). --cadft runs another installation's program on the same run and extracts (e.g.
/work/main/.venv/bin/cadft, to measure before a change). Target: flat in the number of participants, under 4 GB at
502,000 (a full UK Biobank extract) on a 2-core machine. A real backbone adds its weights and its per-batch
activations, which do not grow with the extract either.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CADFT = [PY, "-m", "cadft"]  # the front door: `cadft <command>`
TRAINING = (  # seconds on the tiny backbone; the default text template and features, so records are full length
    "backbone=tiny",
    "train.max_steps=4",
    "train.eval_steps=4",
    "train.save_steps=4",
    "train.max_train_examples=64",
    "train.max_eval_examples=64",
    "eval.bootstrap=50",
    "eval.plots=false",
    "baselines.which=[logistic]",
    "tracking.log_model=adapter",
)


def run_child(args: list[str], env: dict | None = None) -> dict:
    with tempfile.TemporaryFile() as output:
        started = time.perf_counter()
        child = subprocess.Popen(args, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, not the max over all children
        seconds = time.perf_counter() - started
        output.seek(0)
        tail = output.read().decode(errors="replace").strip().splitlines()[-3:]
    return {
        "seconds": round(seconds, 1),
        "peak_rss_gb": round(usage.ru_maxrss / 2**20, 2),
        "returncode": os.waitstatus_to_exitcode(status),
        "tail": tail,
    }


def extract_of(work: Path, n: int) -> Path:
    extract = work / f"ukb_{n}.csv"
    if not extract.is_file():
        synth = run_child([*CADFT, "synth", "--n", str(n), "--seed", "1", "--out", str(extract)])
        if synth["returncode"] != 0:
            raise SystemExit(f"cadft synth --n {n} failed:\n" + "\n".join(synth["tail"]))
        print(f"  cadft synth --n {n}: {synth['seconds']} s")
    return extract


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2_000, 20_000, 100_000, 502_000])
    parser.add_argument("--workdir", type=Path, default=ROOT / "outputs" / "bench" / "predict")
    parser.add_argument("--cadft", help="the cadft program to measure (default: this checkout's, python -m cadft)")
    parser.add_argument("--batch-size", type=int, default=32)
    opts = parser.parse_args()
    work = opts.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    run = work / "run"
    if not (run / "model" / "calibrator.json").is_file():
        train_extract = extract_of(work, 3_000)
        trained = run_child(
            [*CADFT, "train", f"data.path={train_extract}", "data.oracle_path=null", f"hydra.run.dir={run}", *TRAINING],
            {"CADFT_OUTPUT_DIR": str(work / "outputs")},
        )
        if trained["returncode"] != 0:
            raise SystemExit("training the tiny run failed:\n" + "\n".join(trained["tail"]))
    program = [opts.cadft] if opts.cadft else CADFT
    rows = []
    for n in opts.sizes:
        extract = extract_of(work, n)
        out = work / f"risks_{n}.csv"
        result = run_child(
            [*program, "predict", f"run={run}", f"data.path={extract}", f"out={out}", f"batch_size={opts.batch_size}"]
        )
        row = {
            "participants": n,
            "extract_gb": round(extract.stat().st_size / 2**30, 2),
            "program": " ".join(program),
            **{k: result[k] for k in ("seconds", "peak_rss_gb", "returncode")},
        }
        if result["returncode"] != 0:
            row["tail"] = result["tail"]
        print(json.dumps(row))
        rows.append(row)
    with (work / "results.jsonl").open("a") as fh:
        fh.writelines(json.dumps(row) + "\n" for row in rows)


if __name__ == "__main__":
    main()
