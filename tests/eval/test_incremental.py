"""logistic+llm and pce+llm: the clinical model's linear predictor and the language model's logit combined on
validation, compared with the clinical model alone (ΔAUROC, NRI, IDI) on the same test participants; the run's
metrics.json, printed summary, report.html and MLflow metrics carry it."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score

from cadft.cli.eval import main as eval_main
from cadft.data.prepare import prepare
from cadft.data.subsample import training_records
from cadft.eval.baselines.oracle import oracle_scores
from cadft.eval.baselines.run import run_baselines, terms_for_run
from cadft.tracking.names import flatten_metrics

WHICH = ("logistic", "pce_recalibrated", "logistic+llm", "pce+llm")


def _baselines(config, llm_of):
    """run_baselines on the session cohort with language-model scores made by llm_of(split frame) -> probabilities."""
    table = prepare(config).table()
    validation, test = oracle_scores(table, config.data.oracle_path)
    llm = tuple(frame.select("eid", pl.Series("prob", llm_of(frame))) for frame in (validation, test))
    terms = terms_for_run(table, config, training_records(table, config))
    return run_baselines(table, terms, config, None, which=WHICH, llm=llm)


def test_a_combination_with_an_informative_score_gains_and_is_compared_with_its_nested_model(train_config):
    config = train_config("train.max_train_examples=null", "eval.bootstrap=200")
    config = replace(config, baselines=replace(config.baselines, which=list(WHICH)))
    results = _baselines(config, lambda frame: frame["prob"].to_numpy())  # the true risk as the "language model"
    assert set(results) == {*WHICH, "oracle"}  # pce was fitted for pce+llm, not reported
    for name, clinical, reference in (
        ("logistic+llm", "logistic", "logistic (recalibrated: platt)"),
        ("pce+llm", "pce_recalibrated", "pce_recalibrated"),
    ):
        metrics, test = results[name]
        block = metrics["incremental"]
        assert (block["clinical"], block["reference"]) == (name.removesuffix("+llm"), reference)
        assert metrics["baseline"]["tuned"]["coefficients"]["llm"] > 0.5  # the true risk carries weight
        assert metrics["recalibration"]["method"] == "none"  # fitted on validation already
        # ΔAUROC against the clinical model alone: its Platt-recalibrated row ranks as the nested model does.
        alone = results[clinical][1]
        expected = roc_auc_score(test["label"], test["prob"]) - roc_auc_score(alone["label"], alone["prob"])
        assert abs(block["delta_auroc"]["value"] - expected) < 1e-12
        assert block["delta_auroc"]["value"] > 0 and block["idi"]["value"] > 0
        assert all(block[s]["low"] <= block[s]["value"] <= block[s]["high"] for s in ("nri", "nri_continuous", "idi"))
        assert sum(block["reclassified"].values()) > 0
    flat = flatten_metrics(_as_run_metrics(results))
    assert {"incremental/logistic_llm/nri", "incremental/pce_llm/idi_ci_low"} <= set(flat)


def test_a_noise_score_adds_nothing_and_without_scores_the_combinations_are_left_out(train_config):
    config = train_config("train.max_train_examples=null", "eval.bootstrap=200")
    noise = np.random.default_rng(0)
    results = _baselines(config, lambda frame: noise.uniform(0.01, 0.99, frame.height))
    block = results["logistic+llm"][0]["incremental"]
    assert block["delta_auroc"]["low"] <= 0 <= block["delta_auroc"]["high"]
    assert abs(results["logistic+llm"][0]["baseline"]["tuned"]["coefficients"]["llm"]) < 0.5
    table = prepare(config).table()
    terms = terms_for_run(table, config, training_records(table, config))
    assert set(run_baselines(table, terms, config, None, which=WHICH)) == {"logistic", "pce_recalibrated", "oracle"}


def _as_run_metrics(results) -> dict:
    """A run's metrics.json as far as flatten_metrics reads it, with the baselines' incremental blocks."""
    metrics = results["logistic"][0]
    return metrics | {"incremental": {n: results[n][0]["incremental"] for n in ("logistic+llm", "pce+llm")}}


def test_cadft_eval_reports_what_the_language_model_adds(copy_run, tmp_path, capsys):
    out = tmp_path / "eval"
    eval_main([str(copy_run), f"baselines.which=[{','.join(WHICH)}]", "eval.bootstrap=50", "--out", str(out)])
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["incremental"]) == {"logistic+llm", "pce+llm"}
    assert {"logistic+llm", "pce+llm"} <= set(metrics["comparison"])
    printed = capsys.readouterr().out
    assert "What the language model adds" in printed and "pce_recalibrated" in printed
    page = (out / "report.html").read_text()
    assert "What the language model adds to a clinical model" in page and "logistic+llm" in page
