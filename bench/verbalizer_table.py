"""The comparison table of issue 14 on a cohort large enough to resolve it: verbalizer, classifier, zero-shot, age,
equal-terms logistic regression and LightGBM at N training records, with text.history off and on.

    python bench/verbalizer_table.py [--n 36000] [--records 1024] [--history off on] [--device cuda]
                                     [--workdir outputs/bench/verbalizer_table] [--backbone smollm2_135m]

The cohort (`cadft synth --n N --seed 0`) gives about 5,000 participants and 200+ cases per validation and test split.
Every model runs through the real CLIs with the demo's settings (+experiment=demo: SmolLM2-135M-Instruct, LoRA,
class-weighted loss, a case-enriched training sample), changed only in `train.max_train_examples=--records`:
  cadft baselines  logistic, lightgbm, cox (equal terms: the run's text features and training records), age,
                   zero_shot, and the oracle (the simulator's true risk);
  cadft train      head=verbalizer (the demo) and head=classifier, baselines off (cadft baselines has them).
Each model is recalibrated on validation (eval.recalibration, platt) and scored once on test. Paired ΔAUROC and ΔBrier
of the verbalizer against each row come from cadft.eval.bootstrap on the same test participants' reported risks; Uno's C
and the IPCW Brier score come from each model's metrics.json (cadft.eval.survival).
On a CPU this takes hours (scoring ~10,000 records per language model); it is meant for a GPU. Writes table.md and
results.json to the workdir as each setting finishes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
CADFT = [sys.executable, "-m", "cadft"]  # the front door: `cadft <command>`
LANGUAGE_MODELS = {"verbalizer": [], "classifier": ["head=classifier", "~head.system"]}
BASELINES = ["logistic", "lightgbm", "cox", "age", "zero_shot"]
HISTORY_MAX_LENGTH = 224  # the demo's 128 tokens hold its nine features, not a medical history


def cli(command: str, overrides: list[str], log: Path) -> float:
    """`cadft COMMAND OVERRIDES` (the front door, this interpreter), its output to `log`; the seconds it took."""
    started = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(
            [*CADFT, command, *overrides], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=False
        )
    if done.returncode != 0:
        raise SystemExit(
            f"verbalizer_table: cadft {command} failed (exit {done.returncode}); its log: {log}\n"
            f"{log.read_text()[-3000:]}"
        )
    return time.perf_counter() - started


def test_risks(predictions: Path) -> pl.DataFrame:
    return pl.read_ndjson(predictions).filter(pl.col("split") == "test").select("eid", "label", "risk").sort("eid")


def row(name: str, metrics: dict, risks: pl.DataFrame, reference: pl.DataFrame, seconds: float | None) -> dict:
    from cadft.eval.bootstrap import paired_differences

    if not risks["eid"].equals(reference["eid"]):
        raise SystemExit(f"verbalizer_table: {name} scored other test participants than the verbalizer")
    delta = paired_differences(
        reference["label"].to_numpy(),
        reference["risk"].to_numpy(),
        risks["risk"].to_numpy(),
        resamples=int(metrics["bootstrap"]["resamples"]),
        level=float(metrics["bootstrap"]["level"]),
        rng=np.random.default_rng(int(metrics["bootstrap"]["seed"])),
    )
    test = metrics["test"]
    return {
        "model": name,
        "val_auroc": metrics["validation"]["auroc"],
        "test_auroc": test["auroc"],
        "test_auroc_ci": [test["ci"]["auroc"]["low"], test["ci"]["auroc"]["high"]],
        "brier": test["brier"],
        "uno_c": test["survival"]["uno_c"],
        "brier_ipcw": test["survival"]["brier_ipcw"],
        "oe_ratio": test["oe_ratio"],
        "slope": test["calibration_slope"],
        "seconds": seconds,
        "verbalizer_minus_row": {"auroc": delta["delta_auroc"], "brier": delta["delta_brier"]},
    }


def setting(history: str, common: list[str], workdir: Path) -> list[dict]:
    folder = workdir / f"history_{history}"
    folder.mkdir(parents=True, exist_ok=True)
    overrides = [*common, f"text.history={history}"] + (
        [f"train.max_length={HISTORY_MAX_LENGTH}"] if history == "on" else []
    )
    seconds = {
        "baselines": cli(
            "baselines",
            [*overrides, f"baselines.which=[{','.join(BASELINES)}]", f"hydra.run.dir={folder / 'baselines'}"],
            folder / "baselines.log",
        )
    }
    for head, extra in LANGUAGE_MODELS.items():
        seconds[head] = cli(
            "train",
            [*overrides, *extra, "baselines.which=[]", f"hydra.run.dir={folder / head}"],
            folder / f"{head}.log",
        )
    results = {head: (folder / head / "eval") for head in LANGUAGE_MODELS} | {
        name: folder / "baselines" / name for name in [*BASELINES, "oracle"]
    }
    reference = test_risks(results["verbalizer"] / "predictions.jsonl")
    return [
        {
            "history": history,
            **row(
                name,
                json.loads((path / "metrics.json").read_text()),
                test_risks(path / "predictions.jsonl"),
                reference,
                round(seconds[name], 1) if name in seconds else None,
            ),
        }
        for name, path in results.items()
    ]


def markdown(rows: list[dict]) -> str:
    lines = [
        "| history | model | val AUROC | test AUROC [95% CI] | Uno's C | Brier | IPCW Brier | O/E | slope "
        "| ΔAUROC verbalizer − row [95% CI] | run s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        d = r["verbalizer_minus_row"]["auroc"]
        delta = "" if r["model"] == "verbalizer" else f"{d['value']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
        low, high = r["test_auroc_ci"]
        lines.append(
            f"| {r['history']} | {r['model']} | {r['val_auroc']:.3f} | {r['test_auroc']:.3f} [{low:.3f}, {high:.3f}] | "
            f"{r['uno_c']:.3f} | {r['brier']:.4f} | {r['brier_ipcw']:.4f} | {fixed(r['oe_ratio'])} | "
            f"{fixed(r['slope'])} | {delta} | {r['seconds'] or ''} |"
        )
    return "\n".join(lines) + "\n"


def fixed(value: float | None) -> str:
    """Two decimals, or n/a where metrics.json has none (a calibration slope of constant scores)."""
    return "n/a" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=36000)
    parser.add_argument("--records", type=int, default=1024)
    parser.add_argument("--history", nargs="+", choices=["off", "on"], default=["off", "on"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--backbone", default="smollm2_135m")
    parser.add_argument("--eval-batch-size", type=int, default=256)
    parser.add_argument("--workdir", type=Path, default=ROOT / "outputs" / "bench" / "verbalizer_table")
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    extract = workdir / "ukb_synthetic.csv"
    if not extract.is_file():
        workdir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [*CADFT, "synth", "--n", str(args.n), "--seed", "0", "--out", str(extract)],
            cwd=ROOT,
            check=True,
        )
    common = [
        "+experiment=demo",
        f"backbone={args.backbone}",
        f"data.path={extract}",
        f"data.oracle_path={extract.with_suffix('.oracle.csv')}",
        f"paths.output_dir={workdir / 'outputs'}",
        f"train.max_train_examples={args.records}",
        f"train.device={args.device}",
        f"eval.batch_size={args.eval_batch_size}",
        "train.subsample=stratified",
        "tracking.enabled=false",
        "eval.plots=false",
    ]
    rows: list[dict] = []
    for history in args.history:
        rows += setting(history, common, workdir)
        (workdir / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
        (workdir / "table.md").write_text(markdown(rows))
        print(markdown(rows), flush=True)


if __name__ == "__main__":
    main()
