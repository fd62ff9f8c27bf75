"""The learning-curve template: a real sweep over train.max_train_examples on the tiny backbone ends with
learning_curve.csv and .png, the language model beside the baselines trained on the same records and the zero-shot
backbone (scored once for the whole sweep)."""

from __future__ import annotations

import polars as pl
from mlflow import MlflowClient

from cadft.tracking.learning_curve import LANGUAGE_MODEL


def test_a_sweep_over_training_records_draws_a_learning_curve(run_sweep, tmp_path):
    out_dir = tmp_path / "outputs"
    out_dir.mkdir()
    run_sweep(
        out_dir, "learning_curve", "train.max_train_examples=48,96", "seed=1", "baselines.which=[logistic,zero_shot]"
    )
    sweep_dir = next((out_dir / "multiruns").glob("*/*"))
    table = pl.read_csv(sweep_dir / "learning_curve.csv")
    assert sorted(set(table["model"])) == sorted([LANGUAGE_MODEL, "logistic", "zero_shot", "oracle"])
    assert sorted(set(table["records"])) == [48, 96] and (table["runs"] == 1).all()
    by_model = {model: rows.sort("records") for (model,), rows in table.group_by("model")}
    assert by_model["zero_shot"]["auroc_mean"].n_unique() == 1  # the untrained backbone on the same test split
    assert by_model["oracle"]["auroc_mean"].n_unique() == 1
    assert by_model["logistic"]["auroc_mean"].n_unique() == 2  # refitted on each run's own records
    llm = by_model[LANGUAGE_MODEL]
    assert ((llm["auroc_ci_low"] <= llm["auroc_mean"]) & (llm["auroc_mean"] <= llm["auroc_ci_high"])).all()
    assert (
        len(list((out_dir / "prepared" / "zero_shot").glob("*.parquet"))) == 1
    )  # scored once, reused by the second run
    assert (sweep_dir / "learning_curve.png").stat().st_size > 10_000
    client = MlflowClient(f"sqlite:///{out_dir / 'mlflow.db'}")
    parent = next(
        r
        for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
        if r.data.tags.get("kind") == "sweep"
    )
    logged = {artifact.path for artifact in client.list_artifacts(parent.info.run_id, "leaderboard")}
    assert {"leaderboard/learning_curve.csv", "leaderboard/learning_curve.png"} <= logged
