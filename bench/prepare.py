"""Benchmark: `cadft prepare` on a full-size (502,000 participants, full array widths) Showcase extract,
against a naive `pandas.read_csv` of the whole file, measured side by side in one run.

    .venv/bin/python bench/prepare.py [--n 502000] [--workdir outputs/bench/prepare] [--naive-memory-gb 16]

Each side runs in its own process, so peak RSS is that process's own (ru_maxrss of the child).
Targets (2-core machine): prepare <= 60 s and <= 4 GB peak RSS; >= 10x faster than the naive read.
The naive read gets an address-space cap, so on a small machine it fails with MemoryError instead of
taking the machine down; the time to failure is reported then.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CADFT = [PY, "-m", "cadft"]  # the front door: `cadft <command>`
# The backbone of the shipped config (the one whose tokenizer the data card uses), resolved into the cache.
WARM_BACKBONE = """
from cadft.config.compose import compose
from cadft.config.validate import validate
from cadft.train.backbone import resolve_backbone

config = validate(compose("config"))
resolve_backbone(config.backbone, config.paths.cache_dir)
"""


def run_child(args: list[str], env: dict | None = None, memory_gb: float | None = None) -> dict:
    def limit():
        if memory_gb:
            cap = int(memory_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    with tempfile.TemporaryFile() as output:
        started = time.perf_counter()
        child = subprocess.Popen(
            args, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, preexec_fn=limit
        )
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=502_000)
    parser.add_argument("--workdir", type=Path, default=ROOT / "outputs" / "bench" / "prepare")
    parser.add_argument("--naive-memory-gb", type=float, default=16.0)
    opts = parser.parse_args()
    work = opts.workdir.resolve()
    extract = work / f"ukb_{opts.n}.csv"
    if not extract.is_file():
        print(f"generating {opts.n} participants -> {extract}")
        synth = run_child([*CADFT, "synth", "--n", str(opts.n), "--seed", "1", "--out", str(extract)])
        print(f"  cadft synth: {synth['seconds']} s, peak {synth['peak_rss_gb']} GB")
    size_gb = extract.stat().st_size / 2**30
    env = {"CADFT_OUTPUT_DIR": str(work / "outputs")}
    # The backbone conversion (first use only) and the tokenizer are not what this measures: warm them first.
    warm = run_child([PY, "-c", WARM_BACKBONE], env)
    if warm["returncode"] != 0:
        raise SystemExit("prepare: warming the backbone failed:\n" + "\n".join(warm["tail"]))
    subprocess.run(["rm", "-rf", str(work / "outputs" / "prepared")], check=True)
    prepare = run_child(
        [*CADFT, "prepare", f"data.path={extract}", "hydra.run.dir=" + str(work / "outputs" / "hydra")],
        env,
    )
    naive = run_child(
        [PY, "-c", f"import pandas; frame = pandas.read_csv('{extract}'); print(frame.shape)"],
        memory_gb=opts.naive_memory_gb,
    )
    result = {
        "participants": opts.n,
        "file_gb": round(size_gb, 2),
        "prepare": prepare,
        "naive_pandas_read_csv": naive,
        "speedup": round(naive["seconds"] / prepare["seconds"], 1) if prepare["returncode"] == 0 else None,
        "naive_finished": naive["returncode"] == 0,
    }
    print(json.dumps(result, indent=2))
    (work / "result.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
