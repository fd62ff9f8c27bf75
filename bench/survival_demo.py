"""The demo cohort under task.censoring=exclude and task.censoring=ipcw, side by side (issue 25).

    .venv/bin/python bench/survival_demo.py [--workdir outputs/bench/survival_demo] [--smoke] [-- OVERRIDE ...]

For each setting: the demo (`+experiment=demo`: SmolLM2-135M, LoRA, the verbalizer, 512 case-enriched training
records; about 10 minutes on 2 idle cores) on the demo's cohort (`cadft synth --n 8000 --seed 0`, written into the
workdir when absent), with the Cox baselines, then every baseline of the demo on the same split and terms (seconds;
the same numbers as in the run's own report). It prints and writes (table.md, results.json in the workdir):
- per setting: the participants in the prepared table, those censored before the horizon (dropped under exclude;
  kept with weight 0 under ipcw), the test participants and how many have a known 10-year outcome, the test split's
  observed 10-year risk from its follow-up (Aalen-Johansen) and as the binary metrics count it (the plain event rate
  under exclude, the IPCW-weighted one under ipcw);
- per model: test AUROC (IPCW-weighted under ipcw), Harrell's C, Uno's C at 10 years, the IPCW Brier score, and O/E
  (observed from follow-up over the mean predicted risk).
`--smoke` runs the same on the tiny backbone, a 3,000-person cohort and four training steps (about 2 minutes): it
checks the script, its numbers mean nothing. Overrides after `--` go to both settings' config.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ("exclude", "ipcw")
BASELINES = "[logistic,lightgbm,logistic_all,lightgbm_all,pce,pce_recalibrated,age,cox,cox_all]"
SMOKE = (
    "backbone=tiny",
    "head=verbalizer",
    "train.max_steps=4",
    "train.eval_steps=4",
    "train.save_steps=4",
    "train.max_train_examples=128",
    "train.max_eval_examples=64",
    "eval.bootstrap=50",
    "eval.plots=false",
)


def config(workdir: Path, extract: Path, censoring: str, overrides: list[str]):
    from cadft.config.compose import compose
    from cadft.config.validate import validate, with_absolute_paths

    composed = compose(
        "config",
        [
            "+experiment=demo",
            f"paths.output_dir={workdir / censoring}",
            f"paths.prepared_dir={workdir / 'prepared'}",
            f"data.path={extract}",
            f"data.oracle_path={extract.with_suffix('.oracle.csv')}",
            f"task.censoring={censoring}",
            f"baselines.which={BASELINES}",
            *overrides,
        ],
    )
    return with_absolute_paths(validate(composed))


def one_setting(workdir: Path, extract: Path, censoring: str, overrides: list[str]) -> dict:
    import polars as pl

    from cadft.data.followup import STATUS, TIME
    from cadft.data.ipcw import censored_before
    from cadft.data.prepare import prepare
    from cadft.data.subsample import training_records
    from cadft.eval.baselines.run import run_baselines, terms_for_run
    from cadft.train.run import run_training

    cfg = config(workdir, extract, censoring, overrides)
    model = run_training(cfg, workdir / censoring / "run")
    prepared = prepare(cfg)
    table = prepared.table()
    baselines = run_baselines(
        table, terms_for_run(table, cfg, training_records(table, cfg)), cfg, None, which=cfg.baselines.which
    )
    horizon = cfg.task.horizon_years
    test = model["test"]
    censored = censored_before(table[TIME].to_numpy(), table[STATUS].to_numpy(), horizon)
    excluded = {step["step"]: step for step in prepared.card["cohort_steps"]}["censored"]
    return {
        "setting": censoring,
        "prepared_participants": table.height,
        "censored_before_horizon": {"kept": int(censored.sum()), "excluded": excluded["excluded"]},
        "test_participants": test["n"],
        "test_participants_used": test.get("participants_used", test["n"]),
        "test_observed_risk_followup": test["survival"]["observed_risk"],
        "test_observed_risk_binary": test["prevalence"],
        "train_split_ipcw_max": float(table.filter(pl.col("split") == "train")["ipcw_weight"].max())
        if "ipcw_weight" in table.columns
        else None,
        "models": {model["model"]: _row(model)} | {name: _row(metrics) for name, (metrics, _) in baselines.items()},
    }


def _row(metrics: dict) -> dict:
    test, survival = metrics["test"], metrics["test"]["survival"]
    return {
        "auroc": test["auroc"],
        "harrell_c": survival["harrell_c"],
        "uno_c": survival["uno_c"],
        "brier_ipcw": survival["brier_ipcw"],
        "mean_risk": survival["mean_risk"],
        "oe_ratio": survival["oe_ratio"],
        "oe_ratio_binary": test["oe_ratio"],
    }


def table_lines(results: list[dict]) -> list[str]:
    def number(value, digits=3):
        return "–" if value is None else f"{value:.{digits}f}"

    lines = [
        "| task.censoring | prepared participants | censored before 10 y | test participants (outcome known) "
        "| test observed 10-y risk: follow-up (binary label) |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        kept = r["censored_before_horizon"]
        censored = f"{kept['kept']} kept (weight 0)" if r["setting"] == "ipcw" else f"{kept['excluded']} excluded"
        lines.append(
            f"| {r['setting']} | {r['prepared_participants']:,} | {censored} | {r['test_participants']:,} "
            f"({r['test_participants_used']:,}) | {100 * r['test_observed_risk_followup']:.2f}% "
            f"({100 * r['test_observed_risk_binary']:.2f}%) |"
        )
    lines += [
        "",
        "| model | task.censoring | test AUROC | Harrell's C | Uno's C (10 y) | IPCW Brier | mean risk | O/E |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = list(results[0]["models"])
    for name in names:
        for r in results:
            m = r["models"].get(name)
            if m is None:
                continue
            lines.append(
                f"| {name} | {r['setting']} | {number(m['auroc'])} | {number(m['harrell_c'])} | {number(m['uno_c'])} "
                f"| {number(m['brier_ipcw'], 4)} | {100 * m['mean_risk']:.2f}% | {number(m['oe_ratio'], 2)} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / "outputs" / "bench" / "survival_demo")
    parser.add_argument("--smoke", action="store_true", help="tiny backbone, 3,000 people, 4 steps: checks the script")
    parser.add_argument("overrides", nargs="*", help="config overrides for both settings (after --)")
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    extract = workdir / "synthetic" / "ukb_synthetic.csv"
    if not extract.is_file():
        from cadft.cli.synth import main as synth

        assert synth(["--n", "3000" if args.smoke else "8000", "--seed", "0", "--out", str(extract)]) == 0
    overrides = [*(SMOKE if args.smoke else ()), *args.overrides]
    results = [one_setting(workdir, extract, censoring, overrides) for censoring in SETTINGS]
    lines = table_lines(results)
    (workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (workdir / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
