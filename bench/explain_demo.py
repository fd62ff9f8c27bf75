"""The demo run explained: 500 participants of its test split, the language model beside LR and LightGBM, checked
against the synthetic cohort's true risk factors, and the minutes it took.

    python bench/explain_demo.py [RUN_DIR] [--n 500] [--extract outputs/synthetic/ukb_synthetic.csv] [--workdir DIR]
                                 [--train KEY=VALUE ...] [--explain KEY=VALUE ...]

Without RUN_DIR it trains the demo first (`cadft train +experiment=demo`, 7-10 min on 2 CPU cores) into the workdir
(default outputs/bench/explain_demo). The demo cohort (`cadft synth --n 8000 --seed 0`) is written when it is absent
or was written before its oracle held the true contributions (the same seed gives the same extract again, byte for
byte, so a run already trained on it stays valid). Then `cadft explain run=RUN_DIR explain.n=N`, timed. Prints and
writes (workdir/table.md, results.json) the table the README and docs/results.md quote: each method's mean |Δlogit|
per part with its 95% CI, Spearman's ρ of its global importance with the truth's [95% CI], the median per-participant
rank correlation, and the minutes explaining took. `--train`/`--explain` add overrides (a check at tiny size:
`--train backbone=tiny train.max_steps=4 --n 20`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CADFT = [sys.executable, "-m", "cadft"]
NAMES = {"llm": "LLM", "logistic": "LR", "lightgbm": "LightGBM", "truth": "truth"}


def demo_cohort(extract: Path) -> None:
    from cadft.eval.baselines.oracle import oracle_contributions
    from cadft.synth.write import default_oracle_path

    oracle = default_oracle_path(extract)
    if extract.is_file() and oracle.is_file() and oracle_contributions(oracle) is not None:
        return
    subprocess.run([*CADFT, "synth", "--n", "8000", "--seed", "0", "--out", str(extract)], check=True)


def train_demo(workdir: Path, extract: Path, overrides: list[str]) -> tuple[Path, float]:
    runs = workdir / "runs"
    before = set(runs.glob("*/*"))
    command = [*CADFT, "train", "+experiment=demo", f"paths.output_dir={workdir}", f"data.path={extract}"]
    oracle = extract.with_name(f"{extract.stem}.oracle.csv")
    started = time.perf_counter()
    subprocess.run([*command, f"data.oracle_path={oracle}", *overrides], check=True, cwd=ROOT)
    (run,) = set(runs.glob("*/*")) - before
    return run, time.perf_counter() - started


def table(summary: dict) -> str:
    methods = list(dict.fromkeys((row["model"], row["variant"]) for row in summary["importance"]))
    cells = {(row["model"], row["variant"], row["feature"]): row for row in summary["importance"]}

    def interval(row: dict | None) -> str:
        if row is None:
            return "–"
        text = f"{row['mean_abs_delta_logit']:.3f}"
        return text + (f" [{row['low']:.3f}, {row['high']:.3f}]" if row["low"] is not None else "")

    heads = [
        f"{NAMES.get(model, model)} ({variant}): mean \\|{'contribution' if model == 'truth' else 'Δlogit'}\\|"
        for model, variant in methods
    ]
    lines = [
        "| part of the record | " + " | ".join(f"{head} [95% CI]" for head in heads) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for part in summary["parts"]:
        lines.append(f"| {part} | " + " | ".join(interval(cells.get((*method, part))) for method in methods) + " |")
    lines += [
        "",
        "| method | Spearman ρ of global importance with the truth [95% CI] | median per-participant rank corr. |",
        "|---|---|---|",
    ]
    for row in summary.get("agreement", []):
        rho = "–" if row["spearman"] is None else f"{row['spearman']:.2f}"
        if row["low"] is not None:
            rho += f" [{row['low']:.2f}, {row['high']:.2f}]"
        median = row["participant_rank_correlation_median"]
        lines.append(
            f"| {NAMES.get(row['model'], row['model'])} ({row['variant']}) | {rho} | "
            + ("–" if median is None else f"{median:.2f}")
            + " |"
        )
    return "\n".join(lines) + f"\n\n{summary['truth']}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", type=Path, help="a trained demo run dir (default: train one)")
    parser.add_argument("--n", type=int, default=500, help="participants to explain (default 500)")
    parser.add_argument("--extract", type=Path, default=ROOT / "outputs" / "synthetic" / "ukb_synthetic.csv")
    parser.add_argument("--workdir", type=Path, default=ROOT / "outputs" / "bench" / "explain_demo")
    parser.add_argument("--train", nargs="*", default=[], help="overrides for cadft train (KEY=VALUE)")
    parser.add_argument("--explain", nargs="*", default=[], help="overrides for cadft explain (KEY=VALUE)")
    args = parser.parse_args()
    workdir, extract = args.workdir.resolve(), args.extract.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    demo_cohort(extract)
    results = {}
    run = args.run.resolve() if args.run else None
    if run is None:
        run, results["train_seconds"] = train_demo(workdir, extract, args.train)
    out = workdir / "explain"
    started = time.perf_counter()
    command = [*CADFT, "explain", f"run={run}", f"explain.n={args.n}", f"out={out}", *args.explain]
    subprocess.run(command, check=True, cwd=ROOT)
    minutes = (time.perf_counter() - started) / 60
    summary = json.loads((out / "explanations.json").read_text())
    results |= {"run": str(run), "explain_minutes": round(minutes, 2), "cost": summary["cost"], "summary": summary}
    text = table(summary) + (
        f"\nExplaining {summary['participants']} participants took {minutes:.1f} min in all "
        f"({summary['cost']['seconds'] / 60:.1f} min of forward passes: {summary['cost']['forward_passes']:,} passes, "
        f"{summary['cost']['records_scored']:,} distinct records) on {summary['cost']['device']}.\n"
    )
    (workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (workdir / "table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
