"""cadft explain on the session's tiny run: the explanations of the language model beside the baselines' on the same
participants, checked against the synthetic cohort's truth, written and logged; bad input is one line, exit 2, and
leaves nothing behind."""

from __future__ import annotations

import json
import shutil

import mlflow
import polars as pl
import pytest

from cadft.cli.explain import main as explain_main
from cadft.explain.run import COLUMNS
from cadft.layout import EXPLANATIONS_FILE, EXPLANATIONS_SUMMARY, IMPORTANCE_PLOT, REPORT_FILE

PARTS = ["age", "sex", "systolic_bp", "cholesterol", "hdl", "smoking", "diabetes", "bp_medication"]  # TINY_TRAINING's


def test_explain_writes_the_explanations_checks_them_against_the_truth_and_logs_them(tiny_explanation):
    run, out, done = tiny_explanation
    frame = pl.read_parquet(out / EXPLANATIONS_FILE)
    assert frame.columns == list(COLUMNS) and frame["eid"].n_unique() == 16
    methods = sorted(set(frame.select("model", "variant").iter_rows()))
    assert methods == [("lightgbm", "treeshap"), ("llm", "median"), ("llm", "remove"), ("logistic", "coefficient")]
    assert frame.height == 16 * len(PARTS) * 4 and set(frame["feature"]) == set(PARTS)
    test_eids = {
        row["eid"]
        for row in map(json.loads, (run / "eval" / "predictions.jsonl").read_text().splitlines())
        if row["split"] == "test"
    }
    assert set(frame["eid"]) <= test_eids  # a sample of explain.split
    summary = json.loads((out / EXPLANATIONS_SUMMARY).read_text())
    assert summary["parts"] == PARTS and summary["cost"]["forward_passes"] == 16 * (1 + len(PARTS) * 2)
    assert {(row["model"], row["variant"]) for row in summary["agreement"]} == set(methods)
    assert all(row["features"] == PARTS and row["participants"] == 16 for row in summary["agreement"])
    assert {row["model"] for row in summary["importance"]} == {"llm", "logistic", "lightgbm", "truth"}
    page = (out / REPORT_FILE).read_text()
    assert "Agreement with the true risk factors" in page and "<!-- cadft:participants -->" in page
    assert str(frame["eid"][0]) in page and (out / IMPORTANCE_PLOT).stat().st_size > 10_000
    assert "forward passes" in done.stdout and "Spearman of global importance" in done.stdout
    record = json.loads((out / "mlflow_run.json").read_text())  # a run of its own, nested under the training run
    mlflow.set_tracking_uri(record["tracking_uri"])
    explanation = mlflow.get_run(record["run_id"])
    training = json.loads((run / "mlflow_run.json").read_text())["run_id"]
    assert explanation.data.tags["kind"] == "explanation" and explanation.data.tags["cadft.evaluates"] == training
    logged = explanation.data.metrics
    assert "explain/llm_remove/importance/age" in logged and "explain/logistic_coefficient/truth_spearman" in logged
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(record["run_id"], "explain")}
    assert f"explain/{EXPLANATIONS_FILE}" in artifacts  # a local store: per-participant files stay with eids
    assert mlflow.get_run(training).info.status == "FINISHED"


def _error(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        explain_main(list(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


def test_bad_input_is_one_line_exit_2_and_writes_nothing(tiny_run, synthetic_cohort, tmp_path, capsys):
    out = tmp_path / "out"
    no_model = tmp_path / "no_model"
    no_model.mkdir()
    shutil.copy(tiny_run / "config.yaml", no_model)
    other = tmp_path / "other.csv"  # the same people a year older: not the run's records
    extract = pl.read_csv(synthetic_cohort[0], infer_schema=False)
    older = (pl.col("21022-0.0").cast(pl.Int64) + 1).cast(pl.String)
    extract.with_columns(older).write_csv(other, quote_style="always")
    cases = {
        "unknown part": (
            [f"run={tiny_run}", "explain.features=[age,bmi]"],
            "cadft explain: error: explain.features names bmi, which is not part of the record (its parts: "
            + ", ".join(PARTS)
            + ")",
        ),
        "a run without a model": (
            [f"run={no_model}"],
            f"cadft explain: error: run={no_model}: not a finished cadft training run (expected config.yaml and "
            "model/cadft_model.json)",
        ),
        "not KEY=VALUE": ([f"run={tiny_run}", "explain"], "arguments are KEY=VALUE"),
        "no run": (["explain.n=3"], "cadft explain: error: missing run=: the training run dir to explain"),
        "a bad value": ([f"run={tiny_run}", "explain.n=0"], "error: explain.n=0: expected an integer >= 1"),
        "another extract": (
            [f"run={tiny_run}", f"data.path={other}", "explain.n=5"],
            f"data.path={other} gives 5 of the 5 participants to explain another record than the run's prepared table",
        ),
    }
    for name, (args, message) in cases.items():
        assert message in _error(capsys, *args, f"out={out}"), name
        assert not out.exists(), name
