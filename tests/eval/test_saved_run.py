"""cadft eval on a trained tiny run: run dir, checkpoint, MLflow run id; repeatable files; bad targets; evaluation
never rewrites the training run's record (its own MLflow run, its own folder)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import polars as pl
import pytest
from mlflow import MlflowClient

from cadft.cli.eval import main as eval_main
from cadft.train.provenance import record_file


@pytest.fixture
def trained(copy_run) -> Path:
    return copy_run


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.suffix in (".json", ".jsonl")}


def _training_run(run: Path):
    record = json.loads((run / "mlflow_run.json").read_text())
    return MlflowClient(record["tracking_uri"]).get_run(record["run_id"])


def test_eval_run_dir_is_repeatable_and_matches_training(trained, capsys):
    written_by_training = _files(trained / "eval")
    eval_main([str(trained), "--device", "cpu"])
    eval_main([str(trained)])
    first, second = sorted((trained / "evaluations").iterdir())  # each evaluation in a folder of its own
    assert _files(first)["metrics.json"] == written_by_training["metrics.json"]
    assert _files(first)["predictions.jsonl"] == written_by_training["predictions.jsonl"]
    assert {k: v for k, v in _files(first).items() if k != "mlflow_run.json"} == {
        k: v for k, v in _files(second).items() if k != "mlflow_run.json"
    }
    assert _files(trained / "eval") == written_by_training  # what training wrote stays
    assert "test AUROC" in capsys.readouterr().out
    training = _training_run(trained)
    for folder in (first, second):  # an MLflow run of its own, nested under the training run
        record = json.loads((folder / "mlflow_run.json").read_text())
        evaluation = MlflowClient(record["tracking_uri"]).get_run(record["run_id"])
        assert evaluation.info.status == "FINISHED" and evaluation.info.experiment_id == training.info.experiment_id
        assert evaluation.data.tags["kind"] == "evaluation"
        assert evaluation.data.tags["cadft.evaluates"] == evaluation.data.tags["mlflow.parentRunId"]
        assert evaluation.data.tags["cadft.evaluates"] == training.info.run_id
        assert evaluation.data.metrics["test/auroc"] == training.data.metrics["test/auroc"]


def test_the_saved_calibrator_is_reused_and_another_method_is_fitted_again(trained, tmp_path):
    calibrator = trained / "model" / "calibrator.json"
    saved = json.loads(calibrator.read_text())
    edited = saved | {"params": saved["params"] | {"intercept": saved["params"]["intercept"] + 1.0}}
    calibrator.write_text(json.dumps(edited))  # a saved calibrator is applied as saved, not refitted
    record_file(trained / "model", "calibrator.json")  # as the run's own (an edit alone is refused: tests/predict)
    eval_main([str(trained), "--out", str(tmp_path / "reused")])
    assert json.loads((tmp_path / "reused" / "metrics.json").read_text())["recalibration"] == edited
    # other scores (averaged over two feature orders) get a calibrator of their own, fitted on validation
    eval_main([str(trained), "eval.test_time_orders=2", "eval.bootstrap=0", "--out", str(tmp_path / "orders")])
    refitted = json.loads((tmp_path / "orders" / "metrics.json").read_text())["recalibration"]
    assert refitted["method"] == "platt" and refitted["params"] != edited["params"]
    before = _training_run(trained)
    eval_main([str(trained), "eval.recalibration=isotonic", "--out", str(tmp_path / "isotonic")])
    isotonic = json.loads((tmp_path / "isotonic" / "metrics.json").read_text())["recalibration"]
    assert isotonic["method"] == "isotonic" and isotonic["fitted_on"] == "validation"
    # The README's example no longer rewrites history: the training run's params, metrics, status, calibrator and
    # report are what training wrote; the isotonic numbers are in the evaluation's own run.
    after = _training_run(trained)
    assert (after.data.params, after.data.metrics, after.info.status) == (
        before.data.params,
        before.data.metrics,
        before.info.status,
    )
    assert after.data.params["eval.recalibration"] == "platt" and json.loads(calibrator.read_text()) == edited
    evaluation = json.loads((tmp_path / "isotonic" / "mlflow_run.json").read_text())["run_id"]
    logged = MlflowClient(json.loads((trained / "mlflow_run.json").read_text())["tracking_uri"]).get_run(evaluation)
    assert logged.data.params["eval.recalibration"] == "isotonic" and "recalibration/x" not in logged.data.metrics
    assert logged.data.params["eval.overrides"] == "eval.recalibration=isotonic"
    eval_main([str(trained), "eval.recalibration=prior_shift", "--out", str(tmp_path / "prior")])
    assert json.loads((tmp_path / "prior" / "metrics.json").read_text())["recalibration"]["params"]["population_n"] > 0


def test_eval_checkpoint_and_overrides(trained):
    checkpoint = sorted((trained / "checkpoints").glob("checkpoint-*"))[-1]
    eval_main([str(checkpoint), "eval.threshold=max_f1", "eval.bootstrap=20"])
    metrics = json.loads((checkpoint / "eval" / "metrics.json").read_text())
    assert metrics["threshold"]["method"] == "max_f1" and metrics["bootstrap"]["resamples"] == 20


def test_eval_by_mlflow_run_id(trained, tmp_path):
    record = json.loads((trained / "mlflow_run.json").read_text())
    out = tmp_path / "by-id"
    eval_main([record["run_id"], "--tracking-uri", record["tracking_uri"], "--out", str(out)])
    assert json.loads((out / "metrics.json").read_text())["test"]["auroc"] == pytest.approx(
        json.loads((trained / "eval" / "metrics.json").read_text())["test"]["auroc"]
    )
    mlflow.set_tracking_uri(record["tracking_uri"])
    assert "test/auroc" in mlflow.get_run(record["run_id"]).data.metrics
    evaluation = json.loads((out / "mlflow_run.json").read_text())["run_id"]
    assert mlflow.get_run(evaluation).data.tags["cadft.evaluates"] == record["run_id"]


def _error(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        eval_main(list(argv))
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_bad_targets(trained, tmp_path, capsys):
    empty = tmp_path / "empty-checkpoint"
    empty.mkdir()
    shutil.copy(trained / "model" / "cadft_model.json", empty)
    assert "no adapter or model weights" in _error(capsys, str(empty))
    assert "no adapter or model here" in _error(capsys, str(tmp_path))
    assert "not a run dir" in _error(
        capsys, "0123456789abcdef0123456789abcdef", "--tracking-uri", f"sqlite:///{tmp_path}/x.db"
    )


def test_prepared_data_gone(trained, tmp_path, capsys):
    prepared = Path(json.loads((trained / "prepared.json").read_text())["table"])
    moved = tmp_path / "moved.parquet"
    prepared.rename(moved)
    try:
        message = _error(capsys, str(trained), f"data.path={tmp_path / 'gone.csv'}", "--out", str(tmp_path / "out"))
        assert "is gone and cannot be rebuilt" in message and not (tmp_path / "out").exists()
    finally:
        moved.rename(prepared)


def test_a_run_saved_before_the_head_group_existed_evaluates_as_a_classifier(trained, tmp_path):
    from omegaconf import OmegaConf

    from cadft.config.schema import CLASSIFIER
    from cadft.config.typecheck import plain
    from cadft.eval.saved_run import load_run_config

    written_by_training = json.loads((trained / "eval" / "metrics.json").read_text())
    saved = OmegaConf.load(trained / "config.yaml")
    assert saved.head.name == "classifier"
    del saved["head"]
    OmegaConf.save(saved, trained / "config.yaml")
    head = load_run_config(trained, []).head  # typed: the classifier head
    assert head == CLASSIFIER and plain(head) == {"name": "classifier"}
    eval_main([str(trained), "--out", str(tmp_path / "old")])
    assert json.loads((tmp_path / "old" / "metrics.json").read_text())["test"] == written_by_training["test"]


def test_eval_explain_puts_the_explanations_beside_the_report(trained, tmp_path):
    """eval.explain=true (what training does with it too): the explanations' files in the evaluation's folder, their
    section in report.html, their aggregates in metrics.json and MLflow; what goes up without eids has none."""
    from cadft.eval.report import shareable_files

    out = tmp_path / "explained"
    overrides = ["eval.explain=true", "explain.n=10", "explain.variants=[remove]", "explain.baselines=[logistic]"]
    eval_main([str(trained), *overrides, "eval.bootstrap=20", "--out", str(out)])
    metrics = json.loads((out / "metrics.json").read_text())
    entry = metrics["explanations"]
    assert entry["participants"] == 10 and {row["model"] for row in entry["agreement"]} == {"llm", "logistic"}
    assert "cost" not in entry  # the time it took varies: it is in explanations.json
    assert json.loads((out / "explanations.json").read_text())["cost"]["forward_passes"] == 10 * (1 + 8)
    page = (out / "report.html").read_text()
    assert "Headline: discrimination" in page and "Each participant's top reasons" in page
    eids = [str(eid) for eid in pl.read_parquet(out / "explanations.parquet")["eid"].unique()]
    assert all(eid in page for eid in eids)
    shared = {path.name: path for path in shareable_files(out, include_eids=False)}
    assert shared["report.html"].parent.name == shared["explanations.parquet"].parent.name == "shareable"
    stripped = pl.read_parquet(shared["explanations.parquet"])
    assert "eid" not in stripped.columns and sorted(stripped["participant"].unique()) == list(range(1, 11))
    assert stripped.drop("participant").equals(pl.read_parquet(out / "explanations.parquet").drop("eid"))
    shared_page = shared["report.html"].read_text()
    assert "Agreement with the true risk factors" in shared_page and "top reasons" not in shared_page
    assert not any(eid in shared_page for eid in eids)
    record = json.loads((out / "mlflow_run.json").read_text())  # the evaluation's own run
    mlflow.set_tracking_uri(record["tracking_uri"])
    assert "explain/llm_remove/truth_spearman" in mlflow.get_run(record["run_id"]).data.metrics
