"""The baselines (`baselines` group) on the language model's split and terms: fitted on train, tuned and recalibrated on
validation, scored once on test.

- logistic, lightgbm (equal terms): exactly the run's text features (text.features) and its training records
  (the same subsample, the same eids); cadft.eval.baselines.classical.
- logistic_all, lightgbm_all: every data.features column and the whole training split.
- age: logistic regression on age alone, on the run's training records.
- cox, cox_all (incident tasks): Cox proportional-hazards models of the follow-up, on logistic's and logistic_all's
  features and records; cadft.eval.baselines.cox. Left out, with a warning, when the table has no follow-up.
- pce: the Pooled Cohort Equations 10-year ASCVD risk as published (no fitting, no recalibration); missing numeric
  inputs get train medians. pce_recalibrated: the same with intercept and slope refitted on validation (Platt).
- zero_shot: the untrained backbone asked the verbalizer's question (cadft.eval.baselines.zero_shot), recalibrated on
  validation.
- oracle (synthetic cohorts): the simulator's true risk, the ceiling any model can reach (not recalibrated).
- logistic+llm, pce+llm: the clinical model's linear predictor and the language model's logit combined on validation
  (cadft.eval.baselines.incremental), when the language model's scores are given; with the `incremental` block.
Under task.censoring=ipcw the fitted ones are fitted and tuned with the IPCW weights (the Cox models use the follow-up
itself), and every one is evaluated with them, as the language model is.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import polars as pl

from cadft.config.schema import Baselines, Config
from cadft.data.followup import TIME
from cadft.data.ipcw import weighted_cases
from cadft.data.prepare import feature_columns
from cadft.data.text import text_feature_names
from cadft.errors import CadftError
from cadft.eval.baselines.classical import lightgbm_scores, logistic_scores
from cadft.eval.baselines.common import Scored, Terms, score_frame, splits_of
from cadft.eval.baselines.cox import cox_scores
from cadft.eval.baselines.incremental import COMBINATIONS, combine, incremental_value
from cadft.eval.baselines.oracle import oracle_path_for, oracle_scores
from cadft.eval.baselines.pce import PCE_LABEL_INPUTS, PCE_NUMERIC_INPUTS, pce_imputed_participants, pce_scores
from cadft.eval.metrics import evaluate_scores, recalibrated
from cadft.eval.recalibration import TrainingSample
from cadft.eval.report import write_report
from cadft.eval.survival import training_censoring

log = logging.getLogger(__name__)

CLASSICAL = ("logistic", "lightgbm", "logistic_all", "lightgbm_all", "pce", "pce_recalibrated", "age", "cox", "cox_all")
SURVIVAL = ("cox", "cox_all")  # fitted on the follow-up: incident tasks only
# Recalibration each baseline gets: absent = eval.recalibration, like the language model.
RECALIBRATION = {
    "pce": "none",
    "pce_recalibrated": "platt",
    "oracle": "none",
    "logistic+llm": "none",
    "pce+llm": "none",
}


def terms_for_run(table: pl.DataFrame, config: Config, train_rows: pl.DataFrame) -> Terms:
    """A run's terms: its text features and training records (equal terms), and every feature column (the *_all
    ones)."""
    all_features = feature_columns(table)
    return Terms(text_feature_names(all_features, config.text.features), all_features, train_rows["eid"].to_numpy())


def fit_baselines(
    table: pl.DataFrame,
    terms: Terms,
    settings: Baselines,
    *,
    seed: int,
    which=CLASSICAL,
    horizon: float | None = None,
) -> dict[str, Scored]:
    """name -> Scored, for each classical baseline in `which`; the Cox models' risk is at `horizon` years
    (task.horizon_years), which they need."""
    unknown = sorted(set(which) - set(CLASSICAL))
    if unknown:
        raise CadftError(f"baselines.which names {', '.join(unknown)}; allowed here: {', '.join(CLASSICAL)}")
    if TIME not in table.columns and set(which) & set(SURVIVAL):
        log.warning("the prepared table has no follow-up time (a prevalent outcome): the Cox baselines are left out")
        which = [name for name in which if name not in SURVIVAL]
    if set(which) & set(SURVIVAL) and horizon is None:
        raise ValueError("the Cox baselines need the task's horizon")  # a programming error, not user input
    if not terms.all_features:
        raise CadftError(
            "the prepared table has no feature columns (seed-JSON data carries only text): classical "
            "baselines need features"
        )
    absent = [name for name in terms.all_features if name not in table.columns]
    if absent:
        raise CadftError(f"feature column(s) {', '.join(absent)} are not in the prepared table")
    splits = splits_of(table)
    sample_rows = (
        splits["train"]
        if terms.train_eids is None
        else splits["train"].filter(pl.col("eid").is_in(terms.train_eids.tolist()))
    )
    if terms.train_eids is not None and sample_rows.height != len(terms.train_eids):
        raise CadftError(
            f"{len(terms.train_eids) - sample_rows.height} of the run's training eids are not in the prepared "
            "table's training split"
        )
    equal = {**splits, "train": sample_rows}
    fitters = {
        "logistic": lambda: logistic_scores(equal, terms.features, settings, seed),
        "lightgbm": lambda: lightgbm_scores(equal, terms.features, settings, seed),
        "logistic_all": lambda: logistic_scores(splits, terms.all_features, settings, seed),
        "lightgbm_all": lambda: lightgbm_scores(splits, terms.all_features, settings, seed),
        "age": lambda: logistic_scores(equal, ["age"], settings, seed),
        "pce": lambda: pce_scores(splits),
        "cox": lambda: cox_scores(equal, terms.features, settings, horizon),
        "cox_all": lambda: cox_scores(splits, terms.all_features, settings, horizon),
    }
    fitted = {}
    results = {}
    for name in which:
        source = name.removesuffix("_recalibrated")  # the same published scores, recalibrated differently
        if source not in fitted:
            fitted[source] = fitters[source]()
        (validation_prob, test_prob), tuned = fitted[source]
        trained_on = splits["train"] if name.endswith("_all") or name.startswith("pce") else sample_rows
        features = {"logistic": terms.features, "lightgbm": terms.features, "age": ["age"], "cox": terms.features}.get(
            name, terms.all_features
        )
        info = {
            "name": name,
            "fitted_on": "nothing (published equations)" if name.startswith("pce") else "train",
            "features": list(PCE_NUMERIC_INPUTS + PCE_LABEL_INPUTS) if name.startswith("pce") else list(features),
            "train_records": 0 if name.startswith("pce") else trained_on.height,
            "tuned": tuned,
        }
        population_cases, population_n = weighted_cases(splits["train"])
        sample_cases, sample_n = weighted_cases(trained_on)
        sample = TrainingSample(population_cases, population_n, float(sample_cases / sample_n))
        results[name] = Scored(
            score_frame(splits["validation"], validation_prob), score_frame(splits["test"], test_prob), info, sample
        )
    return results


def run_baselines(
    table: pl.DataFrame,
    terms: Terms,
    config: Config,
    out_dir: Path | None,
    *,
    which=CLASSICAL,
    context: dict | None = None,
    device: str | None = None,
    llm: tuple[pl.DataFrame, pl.DataFrame] | None = None,
) -> dict[str, tuple[dict, pl.DataFrame]]:
    """Fit every baseline in `which` (and score the oracle when the config has one for its task) and evaluate each; with
    out_dir, write out_dir/<name>/. Returns name -> (metrics, test frame whose prob is the baseline's reported risk).
    zero_shot runs the backbone on `device` (None: train.device); logistic+llm and pce+llm need `llm`, the language
    model's raw (validation, test) scores (eid, prob), and their metrics hold the `incremental` block."""
    classical = [name for name in which if name in CLASSICAL]
    combinations = [name for name in which if name in COMBINATIONS]
    if combinations and llm is None:
        log.info("%s need the language model's scores: cadft train and cadft eval report them", combinations)
        combinations = []
    sources = [COMBINATIONS[name] for name in combinations if COMBINATIONS[name] not in classical]
    scores = fit_baselines(
        table, terms, config.baselines, seed=config.seed, which=classical + sources, horizon=config.task.horizon_years
    )
    references = {}
    for name in combinations:
        scores[name], references[name] = combine(scores[COMBINATIONS[name]], llm, name)
    for source in sources:  # fitted for a combination only
        del scores[source]
    if "zero_shot" in which:
        from cadft.eval.baselines.zero_shot import zero_shot_scores

        validation, test, info = zero_shot_scores(splits_of(table), config, device)
        scores["zero_shot"] = Scored(validation, test, info)
    oracle_path = oracle_path_for(config)
    if oracle_path is not None:
        validation, test = oracle_scores(table, oracle_path)
        scores["oracle"] = Scored(
            validation, test, {"name": "oracle", "fitted_on": "nothing (the simulator's true risk)"}
        )
    # The Cox models come last: the paired comparison draws its resamples model after model, so adding them to
    # baselines.which leaves every other model's intervals as they were.
    scores = {name: scored for name, scored in scores.items() if name not in SURVIVAL} | {
        name: scored for name, scored in scores.items() if name in SURVIVAL
    }
    censoring = training_censoring(table, config.task.horizon_years)
    results = {}
    for name, scored in scores.items():
        method = RECALIBRATION.get(name, config.eval.recalibration)
        if method == "prior_shift" and scored.sample is None:  # trained on no sample: nothing to undo
            method = "platt"
        metrics = evaluate_scores(
            scored.validation,
            scored.test,
            replace(config.eval, recalibration=method),
            seed=config.seed,
            model=name,
            sample=scored.sample,
            censoring=censoring,
        )
        metrics["baseline"] = scored.info
        if name.startswith("pce"):
            metrics["baseline"]["imputed_participants"] = {
                split: pce_imputed_participants(table.filter(pl.col("split") == split))
                for split in ("validation", "test")
            }
        test = scored.test.sort("eid")
        results[name] = (metrics, test.with_columns(pl.Series("prob", recalibrated(metrics, test["prob"].to_numpy()))))
        if name in references:
            metrics["incremental"] = incremental_value(
                name, results[name][1], references[name].test, config.eval, seed=config.seed
            )
    if out_dir is not None:
        for name, (metrics, _) in results.items():
            others = {other: frame for other, (_, frame) in results.items() if other != name}
            write_report(
                Path(out_dir) / name,
                scores[name].validation,
                scores[name].test,
                metrics,
                curves=others,
                plots=config.eval.plots,
                context=(context or {}) | {"title": f"cadft baseline: {name}"},
            )
    return results
