"""Clinical metrics: threshold choice on validation, bad input, the vectorised and paired bootstrap, calibration tables,
subgroups, flat keys."""

import math
import re
import time

import numpy as np
import polars as pl
import pytest
from omegaconf import OmegaConf
from scipy.special import expit, logit
from sklearn.metrics import average_precision_score, roc_auc_score

from cadft.config import CONF_DIR
from cadft.config.schema import Eval
from cadft.config.typecheck import build, check
from cadft.errors import CadftError
from cadft.eval.bootstrap import ResampledMetrics, bootstrap_cis, draws, paired_differences, resample_counts
from cadft.eval.comparison import compare_with_baselines
from cadft.eval.metrics import (
    check_scores,
    choose_threshold,
    decile_table,
    evaluate_scores,
    oe_ratio_interval,
    split_metrics,
)
from cadft.tracking.names import flatten_metrics

EVAL_DEFAULTS = CONF_DIR / "eval" / "default.yaml"

# Cut-offs of this example, by hand (positive when prob >= t):
#   t     tp fp  sens spec  J     precision F1
#   0.8   1  0   .25  1     .25   1         .400
#   0.7   2  0   .50  1     .50   1         .667
#   0.6   3  0   .75  1     .75   1         .857
#   0.5   3  1   .75  .75   .50   .75       .750
#   0.4   4  1   1    .75   .75   .80       .889
#   0.3   4  2   1    .50   .50   .667      .800
HAND_LABEL = np.array([0, 0, 0, 1, 0, 1, 1, 1])
HAND_PROB = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])


def eval_config(**overrides) -> Eval:
    """The shipped eval group with overrides, checked against its schema and typed (what evaluate_scores receives): a
    bad value is refused here with the same one-line message as the up-front check."""
    values = OmegaConf.to_container(OmegaConf.load(EVAL_DEFAULTS), resolve=True) | {"bootstrap": 200} | overrides
    check(values, Eval, "eval")
    return build(values, Eval)


def scored(n: int, *, seed: int, first_eid: int = 1, prevalence: float = 0.1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    label = (rng.random(n) < prevalence).astype(np.int8)
    prob = expit(-2.5 + 1.5 * label + rng.normal(size=n))
    return pl.DataFrame(
        {
            "eid": np.arange(first_eid, first_eid + n),
            "label": label,
            "prob": prob,
            "sex": rng.choice(["Female", "Male"], n),
            "age": rng.uniform(38, 73, n),
        }
    )


@pytest.mark.parametrize(
    ("method", "target", "expected"),
    [
        ("youden", 0.8, 0.6),  # J ties at 0.6 and 0.4: the higher (more specific) cut-off wins
        ("max_f1", 0.8, 0.4),
        ("sensitivity", 0.7, 0.6),  # the highest cut-off whose sensitivity reaches 0.7 (0.75)
        ("sensitivity", 0.8, 0.4),
        ("sensitivity", 1.0, 0.4),
        ("fixed", 0.8, 0.35),
    ],
)
def test_each_threshold_method_on_a_hand_computed_example(method, target, expected):
    threshold = choose_threshold(HAND_LABEL, HAND_PROB, method, target_sensitivity=target, fixed_threshold=0.35)
    assert threshold == pytest.approx(expected)


def test_threshold_is_chosen_on_validation_and_applied_to_test():
    validation = pl.DataFrame({"eid": range(8), "label": HAND_LABEL, "prob": HAND_PROB})
    test = scored(500, seed=1, first_eid=100)
    metrics = evaluate_scores(validation, test, eval_config(threshold="max_f1", recalibration="none"), seed=0)
    assert metrics["threshold"] == {"method": "max_f1", "value": pytest.approx(0.4), "chosen_on": "validation"}
    assert metrics["test"]["tp"] + metrics["test"]["fn"] == int(test["label"].sum())
    assert metrics["test"]["tp"] == int(((test["prob"] >= 0.4) & (test["label"] == 1)).sum())


def test_validation_without_cases_is_an_error_that_names_the_fallback():
    validation = scored(300, seed=2).with_columns(pl.lit(0, pl.Int8).alias("label"))
    with pytest.raises(CadftError, match=r"validation split has 0 cases.*on_no_validation_cases=fixed"):
        evaluate_scores(validation, scored(300, seed=3, first_eid=1000), eval_config(), seed=0)


def test_validation_without_cases_falls_back_to_the_fixed_threshold_when_configured():
    validation = scored(300, seed=2).with_columns(pl.lit(0, pl.Int8).alias("label"))
    metrics = evaluate_scores(
        validation,
        scored(300, seed=3, first_eid=1000),
        eval_config(on_no_validation_cases="fixed", fixed_threshold=0.2),
        seed=0,
    )
    assert metrics["threshold"]["method"] == "fixed" and metrics["threshold"]["value"] == 0.2
    assert (
        metrics["recalibration"]["method"] == "none"
    )  # platt cannot be fitted without validation cases: said in a note
    assert any("fixed_threshold" in note for note in metrics["notes"]) and any(
        "recalibration=platt was not fitted" in note for note in metrics["notes"]
    )
    assert metrics["validation"]["auroc"] is None and metrics["validation"]["specificity"] is not None


def test_nan_and_out_of_range_probabilities_are_counted():
    test = scored(200, seed=4, first_eid=1000)
    bad = test.with_columns(pl.when(pl.col("eid") < 1003).then(float("nan")).otherwise(pl.col("prob")).alias("prob"))
    with pytest.raises(CadftError, match=r"test: 3 NaN and 0 out-of-range probabilities among 200"):
        evaluate_scores(scored(200, seed=5), bad, eval_config(), seed=0)
    with pytest.raises(CadftError, match=r"0 NaN and 1 out-of-range"):
        check_scores([0, 1], [0.5, 1.2], "test")


def test_label_and_probability_counts_must_match():
    with pytest.raises(CadftError, match="3 labels but 2 probabilities"):
        check_scores([0, 1, 0], [0.1, 0.2], "validation")


def test_other_bad_input_is_refused():
    validation, test = scored(200, seed=6), scored(200, seed=7, first_eid=150)
    with pytest.raises(CadftError, match="both validation and test"):
        evaluate_scores(validation, test, eval_config(), seed=0)
    with pytest.raises(CadftError, match="test split has 0 cases"):
        evaluate_scores(
            validation, test.with_columns(pl.lit(0).alias("label"), pl.col("eid") + 1000), eval_config(), seed=0
        )
    with pytest.raises(CadftError, match=r"eval\.threshold=best: expected one of youden, max_f1"):
        evaluate_scores(validation, test, eval_config(threshold="best"), seed=0)
    with pytest.raises(CadftError, match="lack column"):
        evaluate_scores(validation.drop("prob"), test, eval_config(), seed=0)


def test_vectorised_bootstrap_matches_sklearn_on_each_resample():
    rng = np.random.default_rng(8)
    label = (rng.random(400) < 0.2).astype(int)
    prob = np.round(rng.random(400) * 0.5 + 0.2 * label, 2)  # rounding makes ties, the hard case for AUROC/AUPRC
    positives, negatives = prob[label == 1], prob[label == 0]  # counts are given in this (unsorted) class order
    counts_pos, counts_neg = next(draws(len(positives), len(negatives), 5, np.random.default_rng(9)))
    assert len(set(counts_pos.sum(axis=1))) > 1  # participants are drawn from the whole split: the case count varies
    stats = ResampledMetrics(label, prob, 0.3)(counts_pos, counts_neg)
    for row, w_pos, w_neg in zip(stats, counts_pos, counts_neg):
        y = np.r_[np.ones(w_pos.sum()), np.zeros(w_neg.sum())]
        p = np.r_[np.repeat(positives, w_pos), np.repeat(negatives, w_neg)]
        expected = [
            roc_auc_score(y, p),
            average_precision_score(y, p),
            np.mean((p - y) ** 2),
            np.mean(p[y == 1] >= 0.3),
            np.mean(p[y == 0] < 0.3),
        ]
        np.testing.assert_allclose(row, expected, rtol=1e-12)


def test_bootstrap_is_seeded_and_fast():
    frame = scored(3000, seed=10, prevalence=0.04)
    label, prob = frame["label"].to_numpy(), frame["prob"].to_numpy()
    start = time.perf_counter()
    first = bootstrap_cis(label, prob, 0.1, resamples=1000, level=0.95, rng=np.random.default_rng(1))
    assert time.perf_counter() - start < 2.0
    assert first == bootstrap_cis(label, prob, 0.1, resamples=1000, level=0.95, rng=np.random.default_rng(1))
    assert first["auroc"]["low"] < roc_auc_score(label, prob) < first["auroc"]["high"]
    assert resample_counts(7, 4, np.random.default_rng(0)).sum(axis=1).tolist() == [7] * 4


def test_brier_interval_holds_the_expected_brier_of_calibrated_risks():
    # Test sets drawn from known calibrated risks (~55 cases among 1,200): the expected Brier score is mean p(1 - p).
    # A bootstrap that kept the case count held it in ~15% of test sets; drawing participants holds it ~95%.
    rng = np.random.default_rng(31)
    risk = rng.beta(1.2, 25, size=1200)
    expected_brier, covered = float(np.mean(risk * (1 - risk))), 0
    for _ in range(150):
        label = (rng.random(risk.size) < risk).astype(int)
        interval = bootstrap_cis(label, risk, 0.5, resamples=300, level=0.95, rng=rng)["brier"]
        covered += interval["low"] <= expected_brier <= interval["high"]
    assert covered / 150 >= 0.88


def test_paired_differences_resample_the_same_people_for_both_models():
    frame = scored(2000, seed=14, prevalence=0.08)
    label, prob = frame["label"].to_numpy(), frame["prob"].to_numpy()
    noisy = expit(logit(prob) + np.random.default_rng(15).normal(0, 1.5, prob.size))
    same = paired_differences(label, prob, prob.copy(), resamples=300, level=0.95, rng=np.random.default_rng(0))
    assert same["delta_auroc"] == {"value": 0.0, "low": 0.0, "high": 0.0}  # one model against itself: exactly zero
    delta = paired_differences(label, prob, noisy, resamples=300, level=0.95, rng=np.random.default_rng(0))
    assert delta["delta_auroc"]["value"] == pytest.approx(roc_auc_score(label, prob) - roc_auc_score(label, noisy))
    assert 0 < delta["delta_auroc"]["low"] < delta["delta_auroc"]["value"] < delta["delta_auroc"]["high"]
    # Paired intervals are narrower than the two models' own intervals added up (their errors are correlated).
    own = [
        bootstrap_cis(label, p, 0.5, resamples=300, level=0.95, rng=np.random.default_rng(1))["auroc"]
        for p in (prob, noisy)
    ]
    width = delta["delta_auroc"]["high"] - delta["delta_auroc"]["low"]
    assert width < sum(ci["high"] - ci["low"] for ci in own)


def test_decile_table_has_equal_counts_and_wilson_intervals():
    label = np.array([0] * 95 + [1] * 5)
    prob = np.linspace(0.001, 0.2, 100)
    rows = decile_table(label, prob, 10)
    assert [row["n"] for row in rows] == [10] * 10 and sum(row["cases"] for row in rows) == 5
    last = rows[-1]  # the five cases have the highest risks: 5 of 10 in the top bin
    assert (
        last["observed"] == 0.5
        and last["observed_low"] == pytest.approx(0.2366, abs=1e-4)
        and last["observed_high"] == pytest.approx(0.7634, abs=1e-4)
    )
    assert last["mean_risk"] == pytest.approx(prob[90:].mean())
    block = split_metrics(label, prob, 0.1, 10)
    assert block["ece"] == pytest.approx(sum(abs(r["observed"] - r["mean_risk"]) for r in rows) / 10)
    assert block["oe_ratio"] == pytest.approx(0.05 / prob.mean()) and block["mean_risk"] == pytest.approx(prob.mean())


def _numbers(block: dict) -> dict:
    """The numbers of a metrics.json block (what MLflow can log): not null, not a flag, not a nested table."""
    return {k: v for k, v in block.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def test_subgroups_and_flat_keys_are_valid_mlflow_names():
    settings = eval_config(min_subgroup_cases=5)
    validation, test = scored(600, seed=12), scored(900, seed=13, first_eid=1000)
    metrics = evaluate_scores(validation, test, settings, seed=0)
    assert set(metrics["test"]["subgroups"]) == {"sex", "age"}
    assert set(metrics["test"]["subgroups"]["age"]) == {"under_40", "40-50", "50-60", "60-70", "70_plus"}
    assert sum(s["n"] for s in metrics["test"]["subgroups"]["age"].values()) == 900
    # A paired comparison with a baseline (a noisier score of the same test participants), as a training run adds it.
    noisy = test.with_columns(
        pl.Series("prob", expit(logit(test["prob"].to_numpy()) + np.random.default_rng(16).normal(0, 1, test.height)))
    )
    baseline_metrics = evaluate_scores(validation, noisy, settings, seed=0)
    metrics["comparison"] = compare_with_baselines(
        metrics, test, {"logistic": (baseline_metrics, noisy)}, settings, seed=0
    )
    flat = flatten_metrics(metrics)
    for key in (
        "test/auroc",
        "test/auroc_ci_low",
        "test/auroc_ci_high",
        "test/sensitivity",
        "test/subgroup/sex_Female/auroc",
        "test/subgroup/age_40-50/auroc_ci_low",
        "test/raw/brier",
        "test/oe_ratio",
        "test/decision/t0.075/net_benefit",
        "validation/auroc",
        "threshold",
        "recalibration/intercept",
        "recalibration/slope",
    ):
        assert key in flat, key
    assert all(re.fullmatch(r"[/\w.\- ]+", key) for key in flat)  # what MLflow accepts on every platform
    # Each flat key maps back to its metrics.json value.
    block = metrics["test"]
    assert flat["test/auroc"] == block["auroc"] and flat["test/sensitivity"] == block["sensitivity"]
    assert flat["test/raw/brier"] == block["raw"]["brier"] and flat["test/oe_ratio"] == block["oe_ratio"]
    assert flat["validation/auroc"] == metrics["validation"]["auroc"]
    assert flat["threshold"] == metrics["threshold"]["value"]
    assert flat["recalibration/intercept"] == metrics["recalibration"]["params"]["intercept"]
    assert flat["recalibration/slope"] == metrics["recalibration"]["params"]["slope"]
    for name, interval in block["ci"].items():  # the intervals of metrics.json, oe_ratio's analytic one included
        assert (flat[f"test/{name}_ci_low"], flat[f"test/{name}_ci_high"]) == (interval["low"], interval["high"]), name
    female, band = block["subgroups"]["sex"]["Female"], block["subgroups"]["age"]["40-50"]
    assert (
        flat["test/subgroup/sex_Female/auroc"] == female["auroc"] and flat["test/subgroup/sex_Female/n"] == female["n"]
    )
    assert flat["test/subgroup/age_40-50/auroc_ci_low"] == band["ci"]["auroc"]["low"]
    (row,) = [row for row in block["decision"] if row["threshold"] == 0.075]
    assert flat["test/decision/t0.075/net_benefit"] == row["net_benefit"]
    comparison = metrics["comparison"]["logistic"]
    assert flat["comparison/logistic/auroc"] == comparison["auroc"] == baseline_metrics["test"]["auroc"]
    assert (
        flat["comparison/logistic/delta_auroc"],
        flat["comparison/logistic/delta_auroc_ci_low"],
        flat["comparison/logistic/delta_auroc_ci_high"],
    ) == (comparison["delta_auroc"]["value"], comparison["delta_auroc"]["low"], comparison["delta_auroc"]["high"])
    assert flat["comparison/logistic/delta_brier"] == comparison["delta_brier"]["value"]
    # Every number of the test block is flattened (and nothing else under test/): its own numbers, its intervals, the
    # raw score's numbers, each subgroup's numbers and intervals, each decision row's numbers.
    expected = {f"test/{k}": v for k, v in _numbers(block).items()}
    expected |= {f"test/raw/{k}": v for k, v in _numbers(block["raw"]).items()}
    expected |= {
        f"test/{name}_ci_{end}": interval[end] for name, interval in block["ci"].items() for end in ("low", "high")
    }
    for group, subgroups in block["subgroups"].items():
        for name, sub in subgroups.items():
            prefix = f"test/subgroup/{group}_{name}"
            expected |= {f"{prefix}/{k}": v for k, v in _numbers(sub).items()}
            expected |= {
                f"{prefix}/{metric}_ci_{end}": interval[end]
                for metric, interval in (sub["ci"] or {}).items()
                if interval is not None
                for end in ("low", "high")
            }
    for row in block["decision"]:
        expected |= {f"test/decision/t{row['threshold']:g}/{k}": v for k, v in _numbers(row).items()}
    assert {k: v for k, v in flat.items() if k.startswith("test/")} == expected


def test_a_fixed_threshold_needs_no_validation_cases():
    validation = scored(300, seed=2).with_columns(pl.lit(0, pl.Int8).alias("label"))
    metrics = evaluate_scores(
        validation, scored(300, seed=3, first_eid=1000), eval_config(threshold="fixed", recalibration="none"), seed=0
    )
    assert metrics["threshold"]["value"] == 0.5 and metrics["notes"] == []


def test_separated_classes_have_no_calibration_slope():  # (ties at the boundary too: the MLE is infinite)
    block = split_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.2, 0.9]), 0.5, 10)
    assert block["calibration_slope"] is None and block["calibration_intercept"] is None
    assert block["calibration_in_the_large"] > 0  # defined still: mean risk 0.35 under the observed 0.5


def test_oe_ratio_interval_is_the_published_formula_and_covers_the_case_count_variation():
    # Hand-computed: 43 cases among 1,171, mean risk 5.7%: O/E 0.6442, SE(log O/E) = sqrt((1 - 43/1171) / 43).
    interval = oe_ratio_interval(43, 1171, 0.057, 0.95)
    half = 1.959964 * math.sqrt((1 - 43 / 1171) / 43)
    assert interval == pytest.approx({"low": 0.644224 * math.exp(-half), "high": 0.644224 * math.exp(half)}, rel=1e-5)
    assert oe_ratio_interval(0, 100, 0.05, 0.95) is None
    # Perfectly calibrated risks, new test sets drawn from them: the interval holds 1 about 95% of the time. The
    # label-stratified bootstrap kept the case count, so its O/E interval held 1 far less often (it was too narrow).
    rng = np.random.default_rng(21)
    risk = rng.beta(1.2, 25, size=1200)  # mean ~4.6%: ~55 cases, a demo-sized test split
    covered = 0
    for _ in range(400):
        label = (rng.random(risk.size) < risk).astype(int)
        interval = oe_ratio_interval(int(label.sum()), label.size, float(risk.mean()), 0.95)
        covered += interval["low"] <= 1 <= interval["high"]
    assert 0.92 <= covered / 400 <= 0.98


def test_metrics_json_reports_the_analytic_oe_interval():
    validation, test = scored(1500, seed=22, prevalence=0.05), scored(1500, seed=23, prevalence=0.05, first_eid=10_000)
    metrics = evaluate_scores(validation, test, eval_config(bootstrap=200), seed=0)
    block = metrics["test"]
    assert block["ci"]["oe_ratio"] == oe_ratio_interval(block["cases"], block["n"], block["mean_risk"], 0.95)
    assert block["ci"]["oe_ratio"]["low"] < block["oe_ratio"] < block["ci"]["oe_ratio"]["high"]


def _weighted_and_expanded(frame: pl.DataFrame, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(frame with IPCW weights 1 or 2 plus censored rows of weight 0, the same people with each weight-2 row
    written twice and no censored rows): integer weights are frequency weights."""
    rng = np.random.default_rng(seed)
    weight = rng.choice([1.0, 2.0], frame.height)
    censored = scored(150, seed=seed + 100, first_eid=int(frame["eid"].max()) + 1).with_columns(
        pl.Series("label", np.zeros(150, dtype=np.int8))
    )
    weighted = pl.concat(
        [frame.with_columns(pl.Series("ipcw_weight", weight)), censored.with_columns(pl.lit(0.0).alias("ipcw_weight"))]
    )
    twice = frame.filter(pl.Series(weight == 2.0)).with_columns(pl.col("eid") + 10_000_000)
    return weighted, pl.concat([frame, twice])


def test_ipcw_weights_act_as_frequency_weights_on_every_binary_metric():
    """task.censoring=ipcw: a participant of weight 2 counts as two, one of weight 0 (censored before the horizon,
    label unknown) not at all, in the recalibration and threshold fitted on validation and in every test metric."""
    settings = eval_config(bootstrap=0)
    validation, test = scored(800, seed=21), scored(900, seed=22, first_eid=5000)
    (w_val, e_val), (w_test, e_test) = _weighted_and_expanded(validation, 1), _weighted_and_expanded(test, 2)
    weighted = evaluate_scores(w_val, w_test, settings, seed=0)
    expanded = evaluate_scores(e_val, e_test, settings, seed=0)
    assert weighted["recalibration"]["params"]["slope"] == pytest.approx(expanded["recalibration"]["params"]["slope"])
    assert weighted["threshold"]["value"] == pytest.approx(expanded["threshold"]["value"])
    ours, theirs = weighted["test"], expanded["test"]
    same = ["prevalence", "auroc", "auprc", "brier", "log_loss", "mean_risk", "oe_ratio", "calibration_slope"]
    same += ["calibration_intercept", "calibration_in_the_large", "sensitivity", "specificity", "tp", "fp", "tn", "fn"]
    for key in same:
        assert ours[key] == pytest.approx(theirs[key], rel=1e-6), key
    assert ours["raw"]["auroc"] == pytest.approx(theirs["raw"]["auroc"])
    for mine, other in zip(ours["decision"], theirs["decision"]):
        assert mine["net_benefit"] == pytest.approx(other["net_benefit"]) and mine["ppv"] == pytest.approx(other["ppv"])
    for mine, other in zip(ours["decision_curve"], theirs["decision_curve"]):
        assert mine["model"] == pytest.approx(other["model"], abs=1e-12)
    assert (ours["n"], ours["participants_used"], ours["weighted"]) == (1050, 900, "ipcw")
    assert ours["effective_n"] < 900 and sum(row["n"] for row in ours["deciles"]) == 900  # the censored are in no bin
    assert "weighted" not in theirs and theirs["n"] == e_test.height
