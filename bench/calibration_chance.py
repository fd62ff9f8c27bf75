"""How often a demo-sized cohort's test mean risk lands within 0.8-1.25x its prevalence, by chance alone.

    python bench/calibration_chance.py [--seeds 1-100] [--n 8000] [--workdir outputs/bench/calibration_chance]

Issue 12 asks the demo's headline test mean risk to be 0.8-1.25x the test prevalence. With ~1,100 people and ~50
cases per validation and test split, the two case rates differ by chance, and any recalibration fitted on validation
carries validation's rate to test. This measures that chance on demo-sized cohorts other than the demo's (seed 0):
for each seed, `cadft synth --n N --seed S`, the demo's configuration (+experiment=demo: its text features and
training records), and the models that cost seconds, not the language model:
  logistic   equal-terms logistic regression (cadft.eval.baselines.run), recalibrated on validation (platt, the default)
  age        age alone, the same
  oracle     the simulator's true risk, as it is (no recalibration: the best calibration any model can have)
  oracle+platt  the true risk recalibrated on validation like every model
  logistic+pooled  not a cadft method, measured to size the alternative: the platt slope from validation, its intercept
                moved so that validation's mean risk equals the case rate of train and validation together
Per seed it records the three splits' sizes and cases and, per model, the test mean risk over the test prevalence and
whether it falls in the band. Writes results.json and table.md to the workdir; cohorts stay in <workdir>/cohorts.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BAND = (0.8, 1.25)


def seeds_of(text: str) -> list[int]:
    low, _, high = text.partition("-")
    return list(range(int(low), int(high or low) + 1))


def config(workdir: Path, extract: Path, oracle: Path):
    """The demo's typed config (what the stages take) for one cohort."""
    from cadft.config.compose import compose
    from cadft.config.validate import validate, with_absolute_paths

    overrides = [
        "+experiment=demo",
        f"paths.output_dir={workdir}",
        f"data.path={extract}",
        f"data.oracle_path={oracle}",
        "tracking.enabled=false",
    ]
    return with_absolute_paths(validate(compose("config", overrides)))


def one_cohort(seed: int, n: int, workdir: Path) -> dict:
    from cadft.cli.synth import main as synth
    from cadft.data.prepare import prepare
    from cadft.data.subsample import training_records
    from cadft.eval import recalibration
    from cadft.eval.baselines.oracle import oracle_scores
    from cadft.eval.baselines.run import fit_baselines, terms_for_run

    folder = workdir / "cohorts" / f"seed{seed}"
    extract, oracle = folder / "ukb_synthetic.csv", folder / "ukb_synthetic.oracle.csv"
    if not extract.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        if synth(["--n", str(n), "--seed", str(seed), "--out", str(extract)]) != 0:
            raise SystemExit(f"calibration_chance: cadft synth failed for seed {seed}")
    cfg = config(workdir / "outputs", extract, oracle)
    table = prepare(cfg).table()
    # the run's text features and training records (equal terms), as cadft train gives its baselines
    terms = terms_for_run(table, cfg, training_records(table, cfg))
    scored = {
        name: (s.validation, s.test)
        for name, s in fit_baselines(table, terms, cfg.baselines, seed=cfg.seed, which=("logistic", "age")).items()
    }
    scored["oracle"] = oracle_scores(table, oracle)
    counts = {split: [int(rows.height), int(rows["label"].sum())] for (split,), rows in table.group_by("split")}
    ratios, platt = {}, {}
    for name, (validation, test) in scored.items():
        for method in ("none", "platt") if name == "oracle" else ("platt",):
            fitted = recalibration.fit(method, validation["label"].to_numpy(), validation["prob"].to_numpy())
            if method == "platt":
                platt[name] = fitted
            key = f"{name}+platt" if name == "oracle" and method == "platt" else name
            ratios[key] = float(fitted.apply(test["prob"].to_numpy()).mean() / test["label"].mean())
    validation, test = scored["logistic"]
    pooled_rate = (counts["train"][1] + counts["validation"][1]) / (counts["train"][0] + counts["validation"][0])
    pooled = pooled_level(
        platt["logistic"].params["slope"], validation["prob"].to_numpy(), test["prob"].to_numpy(), pooled_rate
    )
    ratios["logistic+pooled"] = float(pooled.mean() / test["label"].mean())
    return {"seed": seed, "counts": counts, "mean_risk_over_prevalence": ratios}


def pooled_level(slope: float, validation_prob, test_prob, rate: float) -> np.ndarray:
    """Test risks under the validation Platt slope with the intercept that makes validation's mean risk `rate`."""
    from scipy.optimize import brentq
    from scipy.special import expit

    from cadft.eval.recalibration import to_logit

    z = to_logit(validation_prob)
    intercept = brentq(lambda a: expit(a + slope * z).mean() - rate, -100.0, 100.0, xtol=1e-12)
    return expit(intercept + slope * to_logit(test_prob))


def table_md(results: list[dict]) -> str:
    models = list(results[0]["mean_risk_over_prevalence"])
    ratios = {m: np.array([r["mean_risk_over_prevalence"][m] for r in results]) for m in models}
    lines = [
        "| seed | validation cases / n | test cases / n | val rate / test rate | " + " | ".join(models) + " |",
        "|---|---|---|---|" + "---|" * len(models),
    ]
    for row, r in enumerate(results):
        (vn, vc), (tn, tc) = r["counts"]["validation"], r["counts"]["test"]
        cells = [f"{ratios[m][row]:.2f}" + ("" if BAND[0] <= ratios[m][row] <= BAND[1] else " *") for m in models]
        lines.append(
            f"| {r['seed']} | {vc} / {vn} | {tc} / {tn} | {vc / vn / (tc / tn):.2f} | " + " | ".join(cells) + " |"
        )
    summaries = {
        f"in band ({BAND[0]}-{BAND[1]}x)": lambda x: f"{100 * np.mean((x >= BAND[0]) & (x <= BAND[1])):.0f}%",
        "SD of log(ratio)": lambda x: f"{np.log(x).std():.3f}",
        "median ratio": lambda x: f"{np.median(x):.2f}",
    }
    lines += [
        f"| {label} | | | | " + " | ".join(summary(ratios[m]) for m in models) + " |"
        for label, summary in summaries.items()
    ]
    return "\n".join(lines) + "\n\n`*`: test mean risk outside 0.8-1.25x the test prevalence.\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1-100", help="cohort seeds, LOW-HIGH (default 1-100; the demo's is 0)")
    parser.add_argument("--n", type=int, default=8000, help="participants per cohort (default 8000, the demo's)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "outputs" / "bench" / "calibration_chance")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = []
    for seed in seeds_of(args.seeds):
        started = time.perf_counter()
        results.append(one_cohort(seed, args.n, args.workdir.resolve()))
        print(
            f"seed {seed}: {results[-1]['mean_risk_over_prevalence']} ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
        (args.workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        (args.workdir / "table.md").write_text(table_md(results))
    print(table_md(results))


if __name__ == "__main__":
    main()
