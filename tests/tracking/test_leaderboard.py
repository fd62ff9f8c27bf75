"""cadft compare: the leaderboard of a sweep (latest or by parent run id) or an experiment, printed, written as CSV
with a forest plot, and logged to the sweep's parent run."""

from __future__ import annotations

import polars as pl
import pytest
from mlflow import MlflowClient

from cadft.cli.compare import main
from cadft.tracking.leaderboard import ARTIFACT_DIR, CSV_FILE, PLOT_FILE


def _store(out_dir) -> str:
    return f"sqlite:///{out_dir / 'mlflow.db'}"


def _parent_id(out_dir) -> str:
    client = MlflowClient(_store(out_dir))
    (parent,) = client.search_runs([e.experiment_id for e in client.search_experiments()], "tags.kind = 'sweep'")
    return parent.info.run_id


def test_the_latest_sweep_by_default(tiny_sweep, tmp_path, capsys):
    out_dir, _ = tiny_sweep
    main(["--tracking-uri", _store(out_dir), "--out", str(tmp_path / "board")])
    printed = capsys.readouterr().out
    assert "imbalance.positive_fraction" in printed and "test AUROC [95% CI]" in printed
    assert "FINISHED" in printed and "FAILED: CadftError: imbalance.positive_fraction=2" in printed
    board = pl.read_csv(tmp_path / "board" / CSV_FILE)
    assert board["status"].to_list() == ["FINISHED", "FAILED"]  # finished runs first, best AUROC first
    assert board["imbalance.positive_fraction"].to_list() == [0.5, 2]
    finished = board.row(0, named=True)
    assert finished["auroc_ci_low"] <= finished["auroc"] <= finished["auroc_ci_high"]
    assert finished["brier"] is not None and finished["train_seconds"] > 0 and finished["peak_memory_gb"] > 0
    assert (tmp_path / "board" / PLOT_FILE).read_bytes().startswith(b"\x89PNG")


def test_a_sweep_by_parent_run_id_writes_to_its_sweep_dir_and_parent_run(tiny_sweep, capsys):
    out_dir, _ = tiny_sweep
    parent_id = _parent_id(out_dir)
    main([parent_id, "--tracking-uri", _store(out_dir)])
    sweep_dir = next((out_dir / "multiruns").glob("*/*"))
    assert f"wrote {sweep_dir / CSV_FILE}" in capsys.readouterr().out
    logged = {a.path for a in MlflowClient(_store(out_dir)).list_artifacts(parent_id, ARTIFACT_DIR)}
    assert logged == {f"{ARTIFACT_DIR}/{CSV_FILE}", f"{ARTIFACT_DIR}/{PLOT_FILE}"}


def test_an_experiment_lists_its_training_runs(tiny_sweep, tmp_path, capsys):
    out_dir, _ = tiny_sweep
    main(["--experiment", "hard_cad_incident10", "--tracking-uri", _store(out_dir), "--out", str(tmp_path)])
    board = pl.read_csv(tmp_path / CSV_FILE)
    assert board.height == 2  # the sweep's parent run is not a training run
    assert set(board.columns) >= {"run", "strategy", "imbalance", "zero", "backbone", "auroc", "status"}
    assert "experiment hard_cad_incident10" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["0123456789abcdef0123456789abcdef"], "0123456789abcdef0123456789abcdef: no such run"),
        (["0123456789abcdef"], "PARENT_RUN_ID=0123456789abcdef: not an MLflow run id"),
        (["--experiment", "no_such_task"], "--experiment no_such_task: no such MLflow experiment (known: "),
    ],
)
def test_unknown_runs_and_experiments_are_one_clear_line(tiny_sweep, capsys, args, message):
    out_dir, _ = tiny_sweep
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--tracking-uri", _store(out_dir)])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_store_without_sweeps(tmp_path, capsys):
    store = f"sqlite:///{tmp_path / 'empty.db'}"
    MlflowClient(store).search_experiments()  # creates the store
    with pytest.raises(SystemExit):
        main(["--tracking-uri", store])
    assert "no sweep in sqlite:///" in capsys.readouterr().err


def test_runs_are_ranked_on_validation_never_on_test(tmp_path, capsys):
    """A run that is best on test but not on validation is not ranked first (leaderboard, CSV, HTML)."""
    uri = _store(tmp_path)
    client = MlflowClient(uri)
    experiment = client.create_experiment("ranking", artifact_location=(tmp_path / "artifacts").as_uri())
    scores = {
        "best_on_validation": (0.74, 0.70),
        "best_on_test": (0.71, 0.80),
        "worst": (0.60, 0.65),
    }  # (validation, test) AUROC
    for name, (validation, test) in scores.items():
        run = client.create_run(experiment, run_name=name, tags={"strategy": name, "kind": "llm"})
        for key, value in {
            "validation/auroc": validation,
            "test/auroc": test,
            "test/auroc_ci_low": test - 0.05,
            "test/auroc_ci_high": test + 0.05,
            "test/brier": 0.04,
            "test/oe_ratio": 1.0,
        }.items():
            client.log_metric(run.info.run_id, key, value)
        client.set_terminated(run.info.run_id, "FINISHED")
    main(["--experiment", "ranking", "--tracking-uri", uri, "--out", str(tmp_path / "board"), "--html"])
    board = pl.read_csv(tmp_path / "board" / CSV_FILE)
    assert board["strategy"].to_list() == ["best_on_validation", "best_on_test", "worst"]
    assert board["val_auroc"].to_list() == [0.74, 0.71, 0.60] and board["auroc"].to_list() == [0.70, 0.80, 0.65]
    html = (tmp_path / "board" / "leaderboard.html").read_text()
    assert html.index("best_on_validation") < html.index("best_on_test") and "Ranked by validation AUROC" in html
    assert "val AUROC (ranks)" in capsys.readouterr().out
