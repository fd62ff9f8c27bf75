"""cadft train on the tiny backbone: every strategy x imbalance option, resume, MLflow, bad input."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
import torch

from cadft.errors import CadftError
from cadft.train.checkpoints import missing_part
from cadft.train.run import run_training
from tests.conftest import CADFT


def _mlflow_db(cfg) -> Path:
    return Path(cfg.paths.output_dir) / "mlflow.db"


# Every strategy and every imbalance method, each once: the imbalance methods act on the loss and the sampler whatever
# the strategy (tests/train/test_imbalance.py), and tests/train/test_zero.py runs more pairs under ZeRO.
@pytest.mark.parametrize(("strategy", "imbalance"), [("qlora", "weighted"), ("lora", "oversample"), ("full", "none")])
def test_every_strategy_and_imbalance(train_config, tmp_path, strategy, imbalance):
    cfg = train_config(f"model={strategy}", f"imbalance={imbalance}")
    metrics = run_training(cfg, tmp_path / "run")
    run = tmp_path / "run"
    assert (run / "model" / "cadft_model.json").is_file()
    on_disk = json.loads((run / "eval" / "metrics.json").read_text())
    assert on_disk["test"]["auroc"] == pytest.approx(metrics["test"]["auroc"])
    assert 0 <= metrics["test"]["auroc"] <= 1 and metrics["test"]["n"] == on_disk["test"]["n"] > 100
    lines = (run / "eval" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == metrics["test"]["n"] + metrics["validation"]["n"]
    with sqlite3.connect(_mlflow_db(cfg)) as db:
        tags = dict(db.execute("select key, value from tags").fetchall())
        params = dict(db.execute("select key, value from params").fetchall())
        metric_keys = {row[0] for row in db.execute("select distinct key from metrics")}
    assert tags["strategy"] == strategy and tags["imbalance"] == imbalance and tags["backbone"] == "tiny"
    assert params["imbalance.applied.method"] == imbalance
    assert params["imbalance.applied.positive_fraction"] == ("0.25" if imbalance == "oversample" else "natural")
    assert (params["imbalance.applied.weight_case"] != "1.0") == (imbalance == "weighted")
    assert {
        "train/loss_weighted",
        "train/loss_unweighted",
        "train/learning_rate",
        "train/grad_norm",
        "train/examples_per_second",
        "val/auroc",
        "test/auroc",
        "test/auroc_ci_low",
    } <= metric_keys


def test_a_case_enriched_weighted_run_reports_calibrated_risks_beside_equal_terms_baselines(train_config, tmp_path):
    cfg = train_config(
        "train.subsample=all_cases",
        "imbalance=weighted",
        "train.max_train_examples=128",
        "baselines.which=[logistic,lightgbm,logistic_all,lightgbm_all,pce,pce_recalibrated,age]",
    )
    metrics = run_training(cfg, tmp_path / "run")
    test = metrics["test"]
    assert (
        test["raw"]["mean_risk"] > 5 * test["prevalence"]
    )  # enriched sample + class weights: the raw score is no risk
    assert 0.5 < test["mean_risk"] / test["prevalence"] < 2  # the headline risk is recalibrated on validation
    saved = json.loads((tmp_path / "run" / "model" / "calibrator.json").read_text())
    assert saved == metrics["recalibration"] and saved["fitted_on"] == "validation"
    sample = json.loads((tmp_path / "run" / "model" / "training_sample.json").read_text())
    # what prior_shift would undo: the enriched case fraction, and the inverse-frequency weights of that sample
    assert sample["sample_fraction"] > 0.3 and sample["class_weights"][1] == pytest.approx(
        1 / (2 * sample["sample_fraction"])
    )
    assert set(metrics["comparison"]) == {
        "logistic",
        "lightgbm",
        "logistic_all",
        "lightgbm_all",
        "pce",
        "pce_recalibrated",
        "age",
        "oracle",
    }
    for name, comparison in metrics["comparison"].items():
        assert (
            comparison["delta_auroc"]["low"] <= comparison["delta_auroc"]["value"] <= comparison["delta_auroc"]["high"]
        ), name
    baseline = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())["comparison"]["logistic"]
    assert baseline["delta_auroc"]["value"] == pytest.approx(test["auroc"] - baseline["auroc"])
    html = (tmp_path / "run" / "eval" / "report.html").read_text()
    assert (
        "lightgbm_all" in html and "ΔAUROC" in html and "128 (" in html
    )  # the training records, stated in the config summary
    with sqlite3.connect(_mlflow_db(cfg)) as db:
        metric_keys = {row[0] for row in db.execute("select distinct key from metrics")}
    assert {
        "test/raw/brier",
        "test/oe_ratio",
        "comparison/logistic/delta_auroc",
        "test/decision/t0.075/net_benefit",
    } <= metric_keys


def test_an_ipcw_run_keeps_the_censored_and_weighs_training_and_every_metric(train_config, tmp_path):
    """task.censoring=ipcw: the participants censored before the horizon stay in the prepared table (weight 0, the
    others 1/G of the training split's censoring); the loss, the baselines and every binary metric use the weights,
    and every model also gets the censoring-aware block."""
    import polars as pl

    from cadft.data.prepare import prepare

    cfg = train_config("task.censoring=ipcw", "baselines.which=[logistic,cox]", "train.max_train_examples=128")
    metrics = run_training(cfg, tmp_path / "run")
    prepared = prepare(cfg)
    table = prepared.table()
    censored = table.filter((pl.col("followup_status") == 0) & (pl.col("followup_years") < 10))
    assert censored.height > 20 and censored["ipcw_weight"].max() == 0 and censored["label"].max() == 0
    assert table.filter(pl.col("ipcw_weight") > 0)["ipcw_weight"].min() >= 1
    steps = {step["step"]: step for step in prepared.card["cohort_steps"]}
    assert steps["censored"]["excluded"] == 0 and steps["censored"]["policy"] == "ipcw"
    assert prepared.card["followup"]["censored_before_horizon"] == censored.height
    test = metrics["test"]
    assert test["weighted"] == "ipcw" and test["participants_used"] < test["n"]
    assert test["n"] == table.filter(pl.col("split") == "test").height  # everyone is scored and written
    survival = test["survival"]
    assert (
        survival["participants"] == test["n"]
        and survival["censored_before_horizon"] == test["n"] - (test["participants_used"])
    )
    assert survival["censoring"]["censored_before_horizon"] == censored.filter(pl.col("split") == "train").height
    assert set(metrics["comparison"]) == {"logistic", "cox", "oracle"}
    sample = json.loads((tmp_path / "run" / "model" / "training_sample.json").read_text())
    train = table.filter(pl.col("split") == "train")
    assert sample["population_n"] == pytest.approx(train["ipcw_weight"].sum())  # the weighted training split
    lines = (tmp_path / "run" / "eval" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == test["n"] + metrics["validation"]["n"] and "ipcw_weight" in json.loads(lines[0])
    html = (tmp_path / "run" / "eval" / "report.html").read_text()
    assert "weighted by the inverse probability of censoring" in html and "Uno's C" in html
    with sqlite3.connect(_mlflow_db(cfg)) as db:
        metric_keys = {row[0] for row in db.execute("select distinct key from metrics")}
    assert {"test/survival/uno_c", "test/survival/brier_ipcw", "test/participants_used"} <= metric_keys


def test_nothing_identifying_is_logged(train_config, tmp_path, synthetic_cohort):
    cfg = train_config()
    run_training(cfg, tmp_path / "run")
    eids = {
        json.loads(line)["eid"] for line in (tmp_path / "run" / "eval" / "predictions.jsonl").read_text().splitlines()
    }
    texts = [json.loads(line) for line in (tmp_path / "run" / "eval" / "predictions.jsonl").read_text().splitlines()][
        :1
    ]
    with sqlite3.connect(_mlflow_db(cfg)) as db:
        logged = [v for (v,) in db.execute("select value from params union all select value from tags")]
        logged += [k for (k,) in db.execute("select key from metrics union all select key from params")]
    text = " ".join(logged)
    assert not any(str(eid) in text for eid in eids)
    assert "The age at recruitment is" not in text and texts


def test_resume_continues_from_the_last_checkpoint(train_config, tmp_path):
    run = tmp_path / "run"
    run_training(train_config("train.max_steps=4"), run)
    first_run_id = json.loads((run / "mlflow_run.json").read_text())["run_id"]
    cfg = train_config("train.max_steps=6", "train.resume=true")
    run_training(cfg, run)
    state = json.loads((run / "checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6 and min(e["step"] for e in state["log_history"]) == 1
    assert json.loads((run / "mlflow_run.json").read_text())["run_id"] == first_run_id
    with sqlite3.connect(_mlflow_db(cfg)) as db:
        assert db.execute("select count(*) from runs").fetchone()[0] == 1


def test_resume_skips_an_incomplete_checkpoint(train_config, tmp_path, caplog):
    run = tmp_path / "run"
    run_training(train_config("train.max_steps=4"), run)
    checkpoints = run / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == [".staging", "checkpoint-2", "checkpoint-4"]
    assert not any((checkpoints / ".staging").iterdir())  # each checkpoint was renamed out of staging when complete
    assert (checkpoints / "checkpoint-4" / "cadft_model.json").is_file()
    # What a kill mid-write leaves: a checkpoint without its weights (as from an older cadft), a staging folder.
    (checkpoints / "checkpoint-4" / "adapter_model.safetensors").unlink()
    (checkpoints / ".staging" / "checkpoint-6").mkdir()
    with caplog.at_level("INFO", logger="cadft"):
        run_training(train_config("train.max_steps=6", "train.resume=true"), run)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(f"{checkpoints / 'checkpoint-4'} (no weights" in w for w in warnings)
    assert any(str(checkpoints / ".staging" / "checkpoint-6") in w for w in warnings)
    assert any(r.getMessage() == f"resuming from {checkpoints / 'checkpoint-2'}" for r in caplog.records)
    state = json.loads((checkpoints / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6 and state["best_model_checkpoint"].startswith(str(checkpoints / "checkpoint-"))
    assert all(
        missing_part(folder) is None for folder in checkpoints.glob("checkpoint-*")
    )  # step 4 saved again or rotated
    for folder in checkpoints.glob("checkpoint-*"):
        (folder / "trainer_state.json").unlink()
    with pytest.raises(CadftError, match=r"no checkpoint under .* is complete \(checkpoint-6: no trainer_state.json; "):
        run_training(train_config("train.max_steps=8", "train.resume=true"), run)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.resume=true"], "train.resume=true but there is no checkpoint"),
        (["model.lora.target_modules=[nothing_here]"], "nothing_here"),
        (["backbone=hf", "backbone.path=/no/such/model"], "backbone.path='/no/such/model' is not an existing folder"),
        (["tracking.uri=http://127.0.0.1:9"], "tracking.uri=http://127.0.0.1:9 does not answer"),
        (["train.save_steps=3"], "train.save_steps=3 must be a multiple of train.eval_steps=2"),
        (["imbalance=oversample", "imbalance.positive_fraction=2"], "imbalance.positive_fraction=2"),
        (["data.split.fractions={train: 0.0, validation: 0.5, test: 0.5}"], "data.split.fractions"),
    ],
)
def test_bad_settings_fail_before_training(train_config, tmp_path, overrides, message):
    with pytest.raises(CadftError, match=message.replace("[", r"\[").replace("?", r"\?")):
        run_training(train_config(*overrides), tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unwritable_run_dir(train_config, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")  # a run dir below a file cannot be created, even by root
    with pytest.raises(CadftError, match=f"run dir \\(hydra.run.dir\\) {blocker}/run is not writable"):
        run_training(train_config(), blocker / "run")


def test_unwritable_prepared_dir_fails_before_the_extract_is_read(train_config, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(
        CadftError, match=f"prepared data folder \\(paths.prepared_dir\\) {blocker}/prepared is not writable"
    ):
        run_training(train_config(f"paths.prepared_dir={blocker}/prepared"), tmp_path / "run")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CADFT, "train", *args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.mark.slow
def test_cli_end_to_end(synthetic_cohort, prepared_dir, tmp_path):
    extract, oracle = synthetic_cohort
    done = _cli(
        "backbone=tiny",
        "model=lora",
        "imbalance=weighted",
        f"data.path={extract}",
        f"data.oracle_path={oracle}",
        f"paths.output_dir={tmp_path / 'out'}",
        f"paths.prepared_dir={prepared_dir}",
        "train.max_steps=4",
        "train.eval_steps=2",
        "train.save_steps=2",
        "train.max_train_examples=64",
        "train.max_eval_examples=64",
        "train.max_length=128",
        "text.features=[age,sex,systolic_bp,smoking]",
        "eval.bootstrap=50",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "test AUROC [95% CI]" in done.stdout and "oracle" in done.stdout and "report.html" in done.stdout
    run = next((tmp_path / "out" / "runs").glob("*/*"))
    assert {p.name for p in (run / "eval").iterdir()} >= {
        "metrics.json",
        "predictions.jsonl",
        "roc.png",
        "pr.png",
        "calibration.png",
        "decision_curve.png",
        "report.html",
    }
    assert (run / ".hydra" / "config.yaml").is_file()


def test_cli_errors_are_one_clear_line(tmp_path):
    unknown = _cli("model=lorax", cwd=tmp_path)
    assert unknown.returncode == 2 and unknown.stderr.strip().splitlines() == [
        "cadft train: error: model=lorax: no such option of model; allowed: full, lora, qlora (did you mean lora?)"
    ]
    missing = _cli("backbone=tiny", f"data.path={tmp_path / 'nope.csv'}", f"paths.output_dir={tmp_path}", cwd=tmp_path)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert (
        missing.stderr.strip().splitlines()[-1]
        == f"cadft train: error: data.path={tmp_path / 'nope.csv'}: no such file"
    )
    blocker = tmp_path / "a_file"
    blocker.write_text("")  # a folder below a regular file cannot be made, even by root: Hydra's own mkdir would fail
    extract = tmp_path / "extract.csv"
    extract.write_text("")  # exists: the output dir is what is wrong here
    unwritable = _cli(
        "backbone=tiny", f"paths.output_dir={blocker}/out", f"data.path={extract}", cwd=tmp_path
    )  # sweeps: tests/data/test_bad_input.py
    assert unwritable.returncode == 2, unwritable.stderr
    assert unwritable.stderr.strip().splitlines() == [
        f"cadft train: error: paths.output_dir {blocker}/out is not writable (Not a directory)"
    ]


def test_cfg_job_shows_the_composed_config(tmp_path):
    done = _cli("--cfg", "job", "model=qlora", "imbalance=oversample", cwd=tmp_path)
    assert done.returncode == 0
    assert (
        "name: qlora" in done.stdout
        and "method: oversample" in done.stdout
        and "positive_fraction: 0.25" in done.stdout
    )


@pytest.mark.slow
def test_smollm2_smoke(make_config, tmp_path):
    """The default backbone trains a few steps and evaluates (a 500-participant cohort, 3 short features)."""
    from cadft.cli.synth import main as synth

    extract = tmp_path / "small.csv"
    assert synth(["--n", "500", "--seed", "1", "--out", str(extract)]) == 0
    cfg = make_config(
        "backbone=smollm2_135m",
        f"data.path={extract}",
        "text.features=[age,sex,systolic_bp]",
        "train.batch_size=4",
        "train.max_steps=2",
        "train.eval_steps=2",
        "train.save_steps=2",
        "train.max_train_examples=16",
        "train.max_eval_examples=32",
        "eval.bootstrap=20",
        "eval.plots=false",
    )
    metrics = run_training(cfg, tmp_path / "run")
    assert 0 <= metrics["test"]["auroc"] <= 1 and metrics["test"]["n"] > 50
    adapter = json.loads((tmp_path / "run" / "model" / "adapter_config.json").read_text())
    assert "score" in adapter["modules_to_save"] and adapter["r"] == 16  # peft adds its SEQ_CLS defaults beside it


def test_early_stopping_stops_on_a_validation_plateau_and_keeps_the_best_checkpoint(
    train_config, tmp_path, monkeypatch
):
    """Validation AUROC 0.60, 0.70, 0.65, 0.65 at steps 2, 4, 6, 8 (scripted: a tiny model's AUROC wanders at random):
    with patience 2 training stops at step 8 of 20, and the saved model is step 4's."""
    from safetensors.torch import load_file

    from cadft.train import trainer

    scripted, real = iter([0.60, 0.70, 0.65, 0.65, 0.90, 0.90]), trainer.classification_metrics

    def metrics(prediction):
        return real(prediction) | {"auroc": next(scripted)}

    monkeypatch.setattr(trainer, "classification_metrics", metrics)
    cfg = train_config("train.max_steps=20", "train.early_stopping_patience=2", "train.save_total_limit=2")
    run_training(cfg, tmp_path / "run")
    checkpoints = tmp_path / "run" / "checkpoints"
    state = json.loads((checkpoints / "checkpoint-8" / "trainer_state.json").read_text())
    assert (state["global_step"], state["best_global_step"], state["best_metric"]) == (8, 4, 0.70)
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-8"]  # best kept
    saved, best = (
        load_file(folder / "adapter_model.safetensors")
        for folder in (tmp_path / "run" / "model", checkpoints / "checkpoint-4")
    )
    last = load_file(checkpoints / "checkpoint-8" / "adapter_model.safetensors")
    assert saved.keys() == best.keys() and all(torch.equal(saved[k], best[k]) for k in saved)
    assert any(not torch.equal(saved[k], last[k]) for k in saved)  # step 8's weights differ: the best was loaded
    with sqlite3.connect(_mlflow_db(cfg)) as db:
        logged = dict(db.execute("select key, value from metrics where key like 'train/%step%'").fetchall())
    assert (logged["train/steps"], logged["train/best_step"]) == (8, 4)
