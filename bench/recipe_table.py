"""Issue 22's table: the language model's validation-chosen recipe against the baselines, and what it adds to them.

    python bench/recipe_table.py --recipe NAME --lr LR [--gemma-recipe NAME --gemma-lr LR] [--test-time-orders K]
                                 [--n 36000] [--records 1024 4096 none] [--device cpu] [--eval-batch-size 32]
                                 [--backbones smollm2_135m gemma3_270m] [--workdir outputs/bench/recipe_table]
                                 [--out docs/recipe_table.md] [--set KEY=VALUE ...]
    a dry run at tiny size: --backbones tiny --n 3000 --records 64 --set train.max_steps=4 ...

The recipe (NAME: one of multirun_templates/llm_recipe/, LR its learning rate) is the first row of the leaderboard of
the recipe sweep (multirun_templates/llm_recipe.yaml; `leaderboard.csv` in its sweep folder), which is ranked on
validation: the table never chooses. Gemma's recipe is its own sweep's winner when given, else SmolLM2's. K
(eval.test_time_orders for the chosen recipes) is chosen on validation too: `cadft eval WINNER_RUN_DIR
eval.test_time_orders=K --out DIR` for K = 1, 3, 5 and the validation AUROC it prints.
The cohort (`cadft synth --n N --seed 0`; 36,000 gives about 5,000 participants and 200+ cases per validation and
test split). Every model runs through the real CLIs with the demo's settings (+experiment=demo: verbalizer head, the
demo's 9 features) at each number of training records (--records; `none` is the whole training split,
train.subsample=none; a number is a stratified subsample), the same records for every row:
  cadft baselines  age alone, equal-terms logistic regression and LightGBM, PCE, the zero-shot backbone, the oracle;
  cadft train      today's demo recipe (SmolLM2), the chosen recipe on each backbone (up to 3 epochs, the epoch
                   chosen on validation: the template's schedule), each with logistic+llm and pce+llm.
Rows: validation and test AUROC [95% CI], Brier, O/E, and the paired ΔAUROC (row − equal-terms LR) on the same test
participants (cadft.eval.bootstrap). Below each table, what each language model adds to LR and to PCE (the runs'
metrics.json `incremental`: ΔAUROC, NRI, continuous NRI, IDI with CIs). The logistic+llm and pce+llm rows are
recomputed from the runs' and the baselines' predictions with the same code the runs use
(cadft.eval.baselines.incremental). Writes results.json to the workdir and the markdown table to --out as each N
finishes. Time on 2 CPU cores: see docs/training.md (hours per N); on a GPU, minutes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
CADFT = [sys.executable, "-m", "cadft"]  # the front door: `cadft <command>`
TEMPLATES = ROOT / "multirun_templates"
BASELINES = ["age", "logistic", "lightgbm", "pce", "zero_shot"]
BASELINE_ROWS = {
    "age": "age alone",
    "logistic": "logistic regression, equal terms",
    "lightgbm": "LightGBM, equal terms",
    "pce": "Pooled Cohort Equations (published)",
    "zero_shot": "zero-shot (the demo's backbone and question)",
    "oracle": "oracle (the true synthetic risk)",
}
COMBINATIONS = ["logistic+llm", "pce+llm"]


def schedule() -> list[str]:
    """The recipe sweep's one-valued params (epochs, evaluation per epoch, early stopping, whole validation): a rerun
    of a recipe trains as its sweep job did."""
    from omegaconf import OmegaConf

    params = OmegaConf.load(TEMPLATES / "llm_recipe.yaml").hydra.sweeper.params
    return [f"{key}={value}" for key, value in params.items() if "," not in str(value) and key != "model"]


def cli(command: str, overrides: list[str], log: Path) -> float:
    """`cadft COMMAND OVERRIDES` (the front door, this interpreter), its output to `log`; the seconds it took."""
    started = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(
            [*CADFT, command, *overrides], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=False
        )
    if done.returncode != 0:
        raise SystemExit(f"recipe_table: cadft {command} failed (exit {done.returncode}); its log: {log}")
    return time.perf_counter() - started


def predictions(folder: Path) -> pl.DataFrame:
    return pl.read_ndjson(folder / "predictions.jsonl").sort("split", "eid")


def combination_rows(llm_folder: Path, baselines: Path, config) -> dict[str, tuple[dict, pl.DataFrame]]:
    """logistic+llm and pce+llm of one language-model run, from its predictions and the baselines' (raw scores), fitted
    and evaluated as cadft.eval.baselines.run does: name -> (metrics, test frame of risks)."""
    from cadft.eval.baselines.common import Scored
    from cadft.eval.baselines.incremental import COMBINATIONS as SOURCES
    from cadft.eval.baselines.incremental import combine
    from cadft.eval.metrics import evaluate_scores

    def frames(folder: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
        rows = predictions(folder).select("eid", "label", "split", pl.col("raw_score").alias("prob"))
        return tuple(rows.filter(pl.col("split") == split).drop("split") for split in ("validation", "test"))

    llm = frames(llm_folder)
    results = {}
    for name, source in SOURCES.items():
        combined, _ = combine(Scored(*frames(baselines / source)), llm, name)
        settings = replace(config.eval, recalibration="none")
        metrics = evaluate_scores(combined.validation, combined.test, settings, seed=config.seed, model=name)
        results[name] = (metrics, combined.test.select("eid", "label", pl.col("prob").alias("risk")))
    return results


def row(name: str, metrics: dict, risks: pl.DataFrame, reference: pl.DataFrame, seconds: float | None) -> dict:
    """A table row: its metrics and its paired ΔAUROC against the equal-terms logistic regression."""
    from cadft.eval.bootstrap import paired_differences

    risks, reference = risks.sort("eid"), reference.sort("eid")
    if not risks["eid"].equals(reference["eid"]):
        raise SystemExit(f"recipe_table: {name} scored other test participants than logistic regression")
    delta = paired_differences(
        reference["label"].to_numpy(),
        risks["risk"].to_numpy(),
        reference["risk"].to_numpy(),
        resamples=int(metrics["bootstrap"]["resamples"]),
        level=float(metrics["bootstrap"]["level"]),
        rng=np.random.default_rng(int(metrics["bootstrap"]["seed"])),
    )
    test = metrics["test"]
    return {
        "model": name,
        "val_auroc": metrics["validation"]["auroc"],
        "test_auroc": test["auroc"],
        "test_auroc_ci": [test["ci"]["auroc"]["low"], test["ci"]["auroc"]["high"]] if test.get("ci") else None,
        "brier": test["brier"],
        "oe_ratio": test["oe_ratio"],
        "minus_logistic": delta["delta_auroc"],
        "seconds": None if seconds is None else round(seconds, 1),
        "incremental": metrics.get("incremental"),
    }


def test_risks(folder: Path) -> pl.DataFrame:
    return predictions(folder).filter(pl.col("split") == "test").select("eid", "label", "risk")


def setting(records: str, args, common: list[str], recipes: dict[str, tuple[str, str, float]]) -> list[dict]:
    """Every row at one number of training records."""
    from cadft.config.validate import load

    folder = args.workdir / f"records_{records}"
    folder.mkdir(parents=True, exist_ok=True)
    sizes = ["train.subsample=none"] if records == "none" else [f"train.max_train_examples={records}",
                                                                  "train.subsample=stratified"]  # fmt: skip
    overrides = [*common, *sizes]
    seconds = {"baselines": cli(
        "baselines",
        [*overrides, f"baselines.which=[{','.join(BASELINES)}]", f"hydra.run.dir={folder / 'baselines'}"],
        folder / "baselines.log",
    )}  # fmt: skip
    combos = [f"baselines.which=[logistic,pce,{','.join(COMBINATIONS)}]"]
    runs = {"today's demo recipe (SmolLM2-135M)": ("demo_recipe", [*overrides, *combos])}
    for label, (backbone, recipe, lr) in recipes.items():
        recipe_overrides = [f"backbone={backbone}", f"+llm_recipe={recipe}", f"model.learning_rate={lr}", *schedule()]
        recipe_overrides.append(f"eval.test_time_orders={args.test_time_orders}")
        others = [o for o in overrides if not o.startswith("backbone=")]  # --set backbone=tiny: a dry run's other rows
        runs[label] = (backbone, ["--config-dir", str(TEMPLATES), *others, *recipe_overrides, *combos])
    for label, (name, run_overrides) in runs.items():
        seconds[label] = cli("train", [*run_overrides, f"hydra.run.dir={folder / name}"], folder / f"{name}.log")
    baselines = folder / "baselines"
    reference = test_risks(baselines / "logistic")
    rows = []
    for label, (name, _) in runs.items():
        metrics = json.loads((folder / name / "eval" / "metrics.json").read_text())
        rows.append(row(label, metrics, test_risks(folder / name / "eval"), reference, seconds[label]))
    for name, label in BASELINE_ROWS.items():
        metrics = json.loads((baselines / name / "metrics.json").read_text())
        rows.append(row(label, metrics, test_risks(baselines / name), reference, None))
    for label, (name, _) in runs.items():
        if label.startswith("today"):
            continue
        config = load(folder / name / "config.yaml")
        for combo, (metrics, risks) in combination_rows(folder / name / "eval", baselines, config).items():
            rows.append(row(f"{combo} ({label})", metrics, risks, reference, None))
    return [{"records": records, **r} for r in rows]


INTRO = """# The language model's best honest chance, and what it adds to a clinical model

Written by `bench/recipe_table.py` (issue 22). Every language-model row is fine-tuned with the recipe chosen on
validation by the recipe sweep (`multirun_templates/llm_recipe.yaml`: 12 configurations, each with its epoch chosen
on validation, the baselines' budget; [training.md](training.md#the-recipe-chosen-on-validation)), beside today's
demo recipe and the baselines on the same training records, features and test participants. Every model is
recalibrated on validation and scored once on test; ΔAUROC is paired (row − equal-terms logistic regression, the same
resampled participants), and a difference is a finding only when its 95% CI excludes zero. `logistic+llm` and
`pce+llm` combine the clinical model with the language model's logit on validation; the second table compares each
with the clinical model alone (ΔAUROC, NRI across the 5/7.5/10/20% risk categories, continuous NRI, IDI;
[evaluation.md](evaluation.md#what-the-language-model-adds-incremental-value)). Of the two backbones, the one to
report is the one with the higher validation AUROC.
"""


def markdown(rows: list[dict], header: list[str]) -> str:
    lines = [INTRO, *header, ""]
    for records in dict.fromkeys(r["records"] for r in rows):
        part = [r for r in rows if r["records"] == records]
        title = "the whole training split" if records == "none" else f"{records} training records (stratified)"
        lines += [f"### {title}", "", "| model | val AUROC | test AUROC [95% CI] | Brier | O/E "
                  "| ΔAUROC row − equal-terms LR [95% CI] | run s |", "|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in part:
            d = r["minus_logistic"]
            delta = "" if r["model"].startswith("logistic regression") else (
                f"{d['value']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]")  # fmt: skip
            ci = f" [{r['test_auroc_ci'][0]:.3f}, {r['test_auroc_ci'][1]:.3f}]" if r["test_auroc_ci"] else ""
            lines.append(
                f"| {r['model']} | {r['val_auroc']:.3f} | {r['test_auroc']:.3f}{ci} | {r['brier']:.4f} | "
                f"{r['oe_ratio']:.2f} | {delta} | {r['seconds'] or ''} |"
            )
        lines += ["", "What each language model adds (combination − clinical model alone, same test participants):", "",
                  "| language model | combination | ΔAUROC [95% CI] | NRI [95% CI] | continuous NRI [95% CI] "
                  "| IDI [95% CI] |", "|---|---|---|---|---|---|"]  # fmt: skip
        for r in part:
            for combo, block in (r["incremental"] or {}).items():
                cells = [
                    interval(block[s], 4 if s == "idi" else 3) for s in ("delta_auroc", "nri", "nri_continuous", "idi")
                ]
                lines.append(f"| {r['model']} | {combo} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def interval(value: dict, digits: int) -> str:
    if value["low"] is None:
        return f"{value['value']:+.{digits}f}"
    return f"{value['value']:+.{digits}f} [{value['low']:+.{digits}f}, {value['high']:+.{digits}f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", required=True, help="the recipe sweep's winner (leaderboard.csv, first row)")
    parser.add_argument("--lr", required=True, type=float, help="its learning rate")
    parser.add_argument("--gemma-recipe", help="Gemma's own sweep's winner (default: --recipe)")
    parser.add_argument("--gemma-lr", type=float, help="its learning rate (default: --lr)")
    parser.add_argument(
        "--test-time-orders", type=int, default=1, help="K for the chosen recipes (chosen on validation)"
    )
    parser.add_argument("--backbones", nargs="+", default=["smollm2_135m", "gemma3_270m"])
    parser.add_argument("--n", type=int, default=36000)
    parser.add_argument("--records", nargs="+", default=["1024", "4096"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--eval-batch-size", type=int, default=32)
    parser.add_argument("--workdir", type=Path, default=ROOT / "outputs" / "bench" / "recipe_table")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "recipe_table.md")
    parser.add_argument("--set", nargs="*", default=[], help="more KEY=VALUE overrides for every command")
    args = parser.parse_args()
    args.workdir = args.workdir.resolve()
    extract = args.workdir / "ukb_synthetic.csv"
    if not extract.is_file():
        args.workdir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [*CADFT, "synth", "--n", str(args.n), "--seed", "0", "--out", str(extract)], cwd=ROOT, check=True
        )
    common = [
        "+experiment=demo",
        f"data.path={extract}",
        f"data.oracle_path={extract.with_suffix('.oracle.csv')}",
        f"paths.output_dir={args.workdir / 'outputs'}",
        f"train.device={args.device}",
        f"eval.batch_size={args.eval_batch_size}",
        "tracking.enabled=false",
        "eval.plots=false",
        *args.set,
    ]
    recipes = {}
    for backbone in args.backbones:
        gemma = backbone.startswith("gemma")
        recipe, lr = (args.gemma_recipe or args.recipe, args.gemma_lr or args.lr) if gemma else (args.recipe, args.lr)
        recipes[f"{recipe}, lr {lr:g} ({backbone})"] = (backbone, recipe, lr)
    header = [
        f"Measured {dt.date.today().isoformat()} with `python bench/recipe_table.py {' '.join(sys.argv[1:])}` on "
        f"{args.device}: a {args.n:,}-participant synthetic cohort (seed 0), the demo's settings, every model "
        "recalibrated on validation (the combinations are fitted there) and scored once on test.",
    ]
    rows: list[dict] = []
    for records in args.records:
        rows += setting(records, args, common, recipes)
        (args.workdir / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
        args.out.write_text(markdown(rows, header))
        print(markdown(rows, header), flush=True)


if __name__ == "__main__":
    main()
