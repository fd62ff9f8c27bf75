"""Report files: every number in metrics.json recomputed from predictions.jsonl; determinism; all-or-nothing writes."""

import json
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.special import expit, logit
from scipy.stats import binomtest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

import cadft.eval.report as report
from cadft.errors import CadftError
from cadft.eval.metrics import evaluate_scores
from cadft.eval.report import write_report
from tests.eval.test_metrics import eval_config as metrics_eval_config

CLIP = 1e-12  # the documented clipping before logit(p)


eval_config = partial(metrics_eval_config, bootstrap=300)


def scored(n: int, *, seed: int, first_eid: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    label = (rng.random(n) < 0.08).astype(np.int8)
    prob = np.round(expit(-3.0 + 1.4 * label + 1.1 * rng.normal(size=n)), 4)  # rounded: ties included
    return pl.DataFrame(
        {
            "eid": rng.permutation(np.arange(first_eid, first_eid + n)),
            "label": label,
            "prob": prob,
            "sex": rng.choice(["Female", "Male"], n),
            "age": np.round(rng.uniform(39, 72, n)),
        }
    )


@pytest.fixture(scope="module")
def frames():
    return scored(1500, seed=1, first_eid=1_000_000), scored(2000, seed=2, first_eid=2_000_000)


def read_predictions(path: Path) -> pl.DataFrame:
    return pl.DataFrame([json.loads(line) for line in path.read_text().splitlines()])


def newton_logistic(y: np.ndarray, x: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Unpenalised logistic regression by Newton-Raphson (columns of x, fixed offset): an independent check."""
    beta = np.zeros(x.shape[1])
    for _ in range(100):
        p = expit(offset + x @ beta)
        step = np.linalg.solve((x * (p * (1 - p))[:, None]).T @ x, x.T @ (y - p))
        beta += step
        if np.abs(step).max() < 1e-13:
            break
    return beta


def expected_probability_block(y: np.ndarray, p: np.ndarray, bins: int) -> dict:
    """Probability metrics recomputed with sklearn/scipy/numpy only."""
    z = logit(np.clip(p, CLIP, 1 - CLIP))
    intercept, slope = newton_logistic(y, np.column_stack([np.ones_like(z), z]), np.zeros_like(z))
    (in_the_large,) = newton_logistic(y, np.ones((len(z), 1)), z)
    order = np.argsort(p, kind="stable")
    deciles = []
    for index in np.array_split(order, bins):
        k, n = int(y[index].sum()), len(index)
        ci = binomtest(k, n).proportion_ci(method="wilson")
        deciles.append(
            {
                "n": n,
                "cases": k,
                "observed": k / n,
                "observed_low": ci.low,
                "observed_high": ci.high,
                "mean_risk": p[index].mean(),
                "min_risk": p[index].min(),
                "max_risk": p[index].max(),
            }
        )
    return {
        "n": len(y),
        "cases": int(y.sum()),
        "prevalence": y.mean(),
        "mean_risk": p.mean(),
        "oe_ratio": y.mean() / p.mean(),
        "auroc": roc_auc_score(y, p),
        "auprc": average_precision_score(y, p),
        "brier": brier_score_loss(y, p),
        "log_loss": log_loss(y, p),
        "ece": sum(d["n"] / len(y) * abs(d["observed"] - d["mean_risk"]) for d in deciles),
        "deciles": deciles,
        "calibration_intercept": intercept,
        "calibration_slope": slope,
        "calibration_in_the_large": in_the_large,
    }


def expected_block(y: np.ndarray, p: np.ndarray, threshold: float, bins: int) -> dict:
    """A split block recomputed with sklearn/numpy only."""
    pred = (p >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    return expected_probability_block(y, p, bins) | {
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "accuracy": accuracy_score(y, pred),
        "balanced_accuracy": balanced_accuracy_score(y, pred),
        "precision": precision_score(y, pred),
        "recall": recall_score(y, pred),
        "sensitivity": recall_score(y, pred),
        "specificity": recall_score(y, pred, pos_label=0),
        "f1": f1_score(y, pred),
    }


def assert_block(actual: dict, expected: dict) -> None:
    extra = set(actual) - set(expected) - {"ci", "subgroups", "raw", "decision", "decision_curve"}
    assert not extra, f"metrics not recomputed by this test: {extra}"
    for key, value in expected.items():
        if key == "deciles":
            for got, want in zip(actual[key], value, strict=True):
                assert got == {k: pytest.approx(v, abs=1e-12) for k, v in want.items()}
        else:
            assert actual[key] == pytest.approx(value, abs=1e-6), key


def assert_cis_hold_estimates(block: dict) -> None:
    for name, interval in block["ci"].items():
        assert interval["low"] <= block[name] <= interval["high"], name


def test_every_number_in_metrics_json_is_recomputed_from_predictions_jsonl(tmp_path, frames):
    validation, test = frames
    metrics = evaluate_scores(validation, test, eval_config(), seed=7)
    paths = write_report(tmp_path, validation, test, metrics, plots=False)
    written = json.loads(paths["metrics"].read_text())
    rows = read_predictions(paths["predictions"])
    assert rows.height == validation.height + test.height
    bins = written["calibration_bins"]
    val, tst = rows.filter(pl.col("split") == "validation"), rows.filter(pl.col("split") == "test")
    y_val, raw_val = val["label"].to_numpy(), val["raw_score"].to_numpy()

    # Platt recalibration fitted on validation alone: risk = sigmoid(a + b logit(raw)).
    z_val = logit(np.clip(raw_val, CLIP, 1 - CLIP))
    a, b = newton_logistic(y_val, np.column_stack([np.ones_like(z_val), z_val]), np.zeros_like(z_val))
    assert written["recalibration"] == {
        "method": "platt",
        "fitted_on": "validation",
        "params": {"intercept": pytest.approx(a, abs=1e-6), "slope": pytest.approx(b, abs=1e-6), "slope_fixed": 0},
    }
    for part in (val, tst):
        z = logit(np.clip(part["raw_score"].to_numpy(), CLIP, 1 - CLIP))
        np.testing.assert_allclose(part["risk"].to_numpy(), expit(a + b * z), rtol=1e-5)
    p_val = val["risk"].to_numpy()

    fpr, tpr, cutoffs = roc_curve(y_val, p_val, drop_intermediate=False)
    j = tpr - fpr
    threshold = cutoffs[np.flatnonzero(j == j.max()).min()]  # the highest cut-off with the best Youden's J
    assert written["threshold"] == {"method": "youden", "value": threshold, "chosen_on": "validation"}
    assert (rows["flagged"] == (rows["risk"] >= threshold).cast(pl.Int64)).all()

    assert_block(written["validation"], expected_block(y_val, p_val, threshold, bins))
    assert_block(written["validation"]["raw"], expected_probability_block(y_val, raw_val, bins))
    y, p = tst["label"].to_numpy(), tst["risk"].to_numpy()
    assert_block(written["test"], expected_block(y, p, threshold, bins))
    assert_block(written["test"]["raw"], expected_probability_block(y, tst["raw_score"].to_numpy(), bins))
    assert_cis_hold_estimates(written["test"])
    for row, t in zip(written["test"]["decision"], written["risk_thresholds"], strict=True):
        flagged = p >= t
        tp, fp = int((flagged & (y == 1)).sum()), int((flagged & (y == 0)).sum())
        assert row["threshold"] == t and row["net_benefit"] == pytest.approx(tp / len(y) - fp / len(y) * t / (1 - t))
        assert row["ppv"] == pytest.approx(tp / flagged.sum()) and row["flagged"] == pytest.approx(flagged.mean())

    with_groups = tst.join(test.select("eid", "sex", "age"), on="eid")
    bands = {
        "under_40": (-np.inf, 40),
        "40-50": (40, 50),
        "50-60": (50, 60),
        "60-70": (60, 70),
        "70_plus": (70, np.inf),
    }
    groups = {("sex", s): pl.col("sex") == s for s in ("Female", "Male")} | {
        ("age", name): (pl.col("age") >= low) & (pl.col("age") < high) for name, (low, high) in bands.items()
    }
    assert {(g, v) for g in written["test"]["subgroups"] for v in written["test"]["subgroups"][g]} == set(groups)
    for (group, value), condition in groups.items():
        part = with_groups.filter(condition)
        block = written["test"]["subgroups"][group][value]
        y_part, p_part = part["label"].to_numpy(), part["risk"].to_numpy()
        assert (
            block["n"] == part.height
            and block["cases"] == y_part.sum()
            and block["mean_risk"] == pytest.approx(p_part.mean())
        )
        if y_part.sum() >= written["min_subgroup_cases"]:
            assert block["auroc"] == pytest.approx(roc_auc_score(y_part, p_part)) and block["brier"] == pytest.approx(
                brier_score_loss(y_part, p_part)
            )
            assert block["ci"]["auroc"]["low"] <= block["auroc"] <= block["ci"]["auroc"]["high"]
        else:
            assert block["auroc"] is None and "too few cases" in block["note"]
    assert written["schema_version"] == 2 and written["bootstrap"]["resamples"] == 300 and written["notes"] == []


def test_same_inputs_give_byte_identical_files(tmp_path, frames):
    validation, test = frames
    first = write_report(
        tmp_path / "a", validation, test, evaluate_scores(validation, test, eval_config(), seed=3), plots=False
    )
    shuffled = validation.sample(fraction=1.0, shuffle=True, seed=1), test.sample(fraction=1.0, shuffle=True, seed=2)
    again = write_report(tmp_path / "b", *shuffled, evaluate_scores(*shuffled, eval_config(), seed=3), plots=False)
    for name in ("metrics", "predictions"):
        assert first[name].read_bytes() == again[name].read_bytes()
    rewritten = write_report(
        tmp_path / "a", validation, test, evaluate_scores(validation, test, eval_config(), seed=3), plots=False
    )
    assert rewritten["metrics"].read_bytes() == again["metrics"].read_bytes()


def test_without_eids_and_without_recalibration(tmp_path, frames):
    validation, test = frames
    metrics = evaluate_scores(validation, test, eval_config(recalibration="none"), seed=0)
    paths = write_report(tmp_path, validation, test, metrics, plots=False, include_eids=False)
    record = json.loads(paths["predictions"].read_text().splitlines()[0])
    assert set(record) == {"split", "label", "risk", "raw_score", "flagged"} and record["risk"] == record["raw_score"]


def test_a_line_count_mismatch_writes_nothing(tmp_path, frames):
    validation, test = frames
    metrics = evaluate_scores(validation, test, eval_config(), seed=0)
    with pytest.raises(CadftError, match=r"1999 test lines but metrics\.json counts n=2000"):
        write_report(tmp_path / "out", validation, test.slice(1), metrics)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_failure_while_writing_leaves_the_previous_report_untouched(tmp_path, frames, monkeypatch):
    validation, test = frames
    metrics = evaluate_scores(validation, test, eval_config(), seed=0)
    write_report(tmp_path, validation, test, metrics, plots=False)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def fail_halfway(directory, *args, **kwargs):
        (directory / "roc.png").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(report, "write_plots", fail_halfway)
    with pytest.raises(OSError, match="disk full"):
        write_report(tmp_path, validation, test, evaluate_scores(validation, test, eval_config(), seed=1))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_plots_draw_reference_curves_of_the_same_participants(tmp_path, frames):
    validation, test = frames
    metrics = evaluate_scores(validation, test, eval_config(bootstrap=0), seed=0)
    baseline = test.select("eid", "label", pl.col("prob").sqrt().alias("prob"))
    paths = write_report(tmp_path, validation, test, metrics, curves={"baseline": baseline})
    assert {"roc", "pr", "calibration", "decision_curve", "scores", "report"} <= set(paths)
    assert all(
        paths[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        for name in ("roc", "pr", "calibration", "decision_curve", "scores")
    )
    html = paths["report"].read_text()
    assert html.count("data:image/png;base64,") == 5 and "Decisions at guideline risk thresholds" in html
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths.values())
    with pytest.raises(CadftError, match="not the 2000 test participants"):
        write_report(tmp_path / "other", validation, test, metrics, curves={"baseline": baseline.slice(5)})
