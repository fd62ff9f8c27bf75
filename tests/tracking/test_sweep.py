"""Sweeps (`cadft train -m` over multirun_templates/): one MLflow parent run, a child per job (each job reads the
sweep's record, mlflow_sweep.json, itself), failures recorded and survived, data prepared once; every template and the
SLURM launcher compose."""

from __future__ import annotations

import json

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import get_class
from mlflow import MlflowClient
from omegaconf import OmegaConf

from cadft.config import CONF_DIR
from cadft.layout import SWEEP_RECORD
from cadft.tracking.sweep import SweepJob, sweep_job
from tests.conftest import TEMPLATES_DIR

TEMPLATES = sorted(path.stem for path in TEMPLATES_DIR.glob("*.yaml"))


def _sweep_runs(out_dir):
    client = MlflowClient(f"sqlite:///{out_dir / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = [run for run in runs if run.data.tags.get("kind") == "sweep"]
    assert len(parents) == 1
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    return parents[0], sorted(children, key=lambda run: run.data.tags["cadft.sweep.job"])


def test_a_command_line_sweep_without_a_template_gets_its_parent_run(run_sweep, tmp_path):
    """`cadft train -m seed=0,1` on the app's own config: no hydra.sweeper.params, still one parent run."""
    out_dir = tmp_path / "outputs"
    out_dir.mkdir()
    done = run_sweep(out_dir, "config", "seed=0,1", "train.max_steps=2")
    parent, children = _sweep_runs(out_dir)
    assert "raised" not in done.stdout + done.stderr  # Hydra logs a failing callback and goes on
    assert parent.data.tags["cadft.sweep.swept"] == "seed" and parent.data.tags["cadft.sweep.params"] == "{}"
    assert [run.data.tags["cadft.swept.seed"] for run in children] == ["0", "1"]
    # The jobs prepare the data once: the second reads the first's table from the cache.
    assert len([p for p in (out_dir / "prepared").iterdir() if not p.name.startswith(".")]) == 1
    sweep_dir = next((out_dir / "multiruns").glob("*/*"))
    logs = [(sweep_dir / str(job) / "train.log").read_text() for job in (0, 1)]
    assert ["prepared data from cache" in log for log in logs] == [False, True]


def test_a_sweep_is_one_parent_run_with_a_child_per_job(tiny_sweep):
    out_dir, done = tiny_sweep
    parent, children = _sweep_runs(out_dir)
    assert parent.info.status == "FINISHED" and parent.data.tags["cadft.sweep.config"] == "sweep_strategies"
    assert (
        parent.data.tags["cadft.sweep.swept"] == "imbalance.positive_fraction"
    )  # model and imbalance fixed on the command line
    assert "imbalance.positive_fraction=0.5,2" in parent.data.tags["cadft.sweep.overrides"]
    finished, failed = children
    assert [run.info.status for run in children] == ["FINISHED", "FAILED"]
    assert (
        finished.data.tags["cadft.swept.imbalance.positive_fraction"] == "0.5"
        and "cadft.swept.model" not in finished.data.tags
    )
    assert finished.info.run_name == "imbalance.positive_fraction=0.5"
    assert {"strategy", "imbalance", "zero", "backbone"} <= set(finished.data.tags)
    assert 0 <= finished.data.metrics["test/auroc"] <= 1 and "train/peak_memory_gb" in finished.data.metrics
    assert failed.data.tags["cadft.swept.imbalance.positive_fraction"] == "2"
    assert failed.data.tags["cadft.error"].startswith("CadftError: imbalance.positive_fraction=2")
    assert failed.data.tags["strategy"] == "lora" and "test/auroc" not in failed.data.metrics
    assert "sweep job 1 failed: imbalance.positive_fraction=2" in done.stderr + done.stdout


def test_the_sweep_ends_with_a_leaderboard_on_the_parent_run(tiny_sweep):
    out_dir, done = tiny_sweep
    parent, _ = _sweep_runs(out_dir)
    assert "test AUROC [95% CI]" in done.stdout and "FAILED" in done.stdout
    client = MlflowClient(f"sqlite:///{out_dir / 'mlflow.db'}")
    logged = {artifact.path for artifact in client.list_artifacts(parent.info.run_id, "leaderboard")}
    assert logged == {"leaderboard/leaderboard.csv", "leaderboard/auroc_forest.png"}
    sweep_dir = next((out_dir / "multiruns").glob("*/*"))
    assert json.loads((sweep_dir / SWEEP_RECORD).read_text())["parent_run_id"] == parent.info.run_id


def test_each_job_reads_its_place_in_the_sweep_from_the_sweep_record(tmp_path, monkeypatch):
    """What a job hands its run (cadft.tracking.sweep.sweep_job): the parent run and the job's swept values as tags and
    run name, read from the sweep dir's record; none without a record (an untracked sweep) or off rank 0."""
    monkeypatch.delenv("RANK", raising=False)
    hydra_config = OmegaConf.create(
        {
            "sweep": {"dir": str(tmp_path)},
            "overrides": {"task": ["model=lora", "imbalance.positive_fraction=0.5", "model.learning_rate=1e-4"]},
            "job": {"num": 3},
        }
    )
    assert sweep_job(hydra_config) is None
    record = {"parent_run_id": "a" * 32, "tracking_uri": "sqlite:///x.db", "swept": ["imbalance.positive_fraction"]}
    (tmp_path / SWEEP_RECORD).write_text(json.dumps(record))
    assert sweep_job(hydra_config) == SweepJob(
        "a" * 32,
        {"cadft.swept.imbalance.positive_fraction": "0.5", "cadft.sweep.job": "3"},
        "imbalance.positive_fraction=0.5",
        "sqlite:///x.db",
    )
    (tmp_path / SWEEP_RECORD).write_text(json.dumps(record | {"swept": ["model.learning_rate", "model"]}))
    assert sweep_job(hydra_config) == SweepJob(
        "a" * 32,
        {"cadft.swept.model.learning_rate": "0.0001", "cadft.swept.model": "lora", "cadft.sweep.job": "3"},
        "model.learning_rate=0.0001 model=lora",
        "sqlite:///x.db",
    )
    (tmp_path / SWEEP_RECORD).write_text(json.dumps(record | {"swept": []}))  # nothing swept: no run name of its own
    assert sweep_job(hydra_config) == SweepJob("a" * 32, {"cadft.sweep.job": "3"}, None, "sqlite:///x.db")
    monkeypatch.setenv("RANK", "1")  # only rank 0 talks to MLflow
    assert sweep_job(hydra_config) is None


def test_a_job_with_a_bad_value_fails_before_it_reads_data(tiny_sweep):
    """The command line of a sweep is checked for each job's composition; each job's values when the job runs."""
    out_dir, _ = tiny_sweep
    sweep_dir = next((out_dir / "multiruns").glob("*/*"))
    lines = (sweep_dir / "1" / "train.log").read_text().strip().splitlines()  # the failure alone: no data was read
    assert len(lines) == 1 and lines[0].endswith(
        "sweep job 1 failed: imbalance.positive_fraction=2: expected a number in (0, 1) or null"
    )


def _compose_template(name: str, overrides: list[str]):
    # As `--config-dir multirun_templates`: the template is the primary config and conf/ is on the search path.
    with initialize_config_dir(config_dir=str(TEMPLATES_DIR), version_base="1.3"):
        return compose(name, overrides=[f"hydra.searchpath=[file://{CONF_DIR}]", *overrides], return_hydra_config=True)


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_template_and_each_of_its_jobs_composes(template):
    assert not (CONF_DIR / f"{template}.yaml").exists(), "conf/ would shadow a template of the same name"
    assert (TEMPLATES_DIR / f"{template}.yaml").read_text().startswith("# "), "a template starts with what it compares"
    cfg = _compose_template(template, [])
    params = {key: str(value) for key, value in cfg.hydra.sweeper.params.items()}
    assert params and "sweep_tracking" in cfg.hydra.callbacks
    jobs = BasicSweeper.split_arguments(
        OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()]), None
    )[0]
    assert len(jobs) > 1
    for job in jobs:
        composed = _compose_template(template, job)
        assert composed.model.name in ("lora", "qlora", "full")


def test_the_slurm_launcher_composes():
    cfg = _compose_template(
        "sweep_strategies", ["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=30"]
    )
    launcher = cfg.hydra.launcher
    assert get_class(launcher._target_).__name__ == "SlurmLauncher"
    assert (launcher.partition, launcher.timeout_min, launcher.gpus_per_node, launcher.tasks_per_node) == (
        "gpu",
        30,
        1,
        1,
    )
    assert launcher.submitit_folder.startswith(str(cfg.hydra.sweep.dir))  # pickles and logs on the shared sweep dir


def test_the_llm_recipe_template_runs_with_its_epoch_chosen_on_validation(run_sweep, tmp_path):
    """multirun_templates/llm_recipe.yaml cut to one job on the tiny backbone (its 12 compose: see
    tests/config/test_validate.py): up to 3 epochs of 2 steps, validation scored after each, the compact text with
    features shuffled per record; the leaderboard shows the step whose checkpoint was kept."""
    import csv

    out_dir = tmp_path / "outputs"
    out_dir.mkdir()
    recipe = "r32_all_linear_compact_shuffled"
    run_sweep(out_dir, "llm_recipe", f"+llm_recipe={recipe}", "model.learning_rate=5e-4", "train.max_steps=-1",
              "train.max_train_examples=16")  # fmt: skip
    _, (job,) = _sweep_runs(out_dir)
    params, metrics = job.data.params, job.data.metrics
    assert job.info.status == "FINISHED"  # one recipe given: nothing swept (the template's 4 are, tagged)
    assert (params["text.name"], params["train.shuffle_feature_order"], params["model.lora.r"]) == (
        "compact",
        "True",
        "32",
    )
    assert (params["train.eval_every"], params["train.early_stopping_patience"], params["train.epochs"]) == (
        "epoch",
        "1",
        "3.0",  # train.epochs is a number of the schema: a float
    )
    assert metrics["train/steps"] in (4, 6) and metrics["train/best_step"] in (2, 4, 6)
    assert (
        metrics["train/best_step"] == metrics["train/steps"] or metrics["train/steps"] == metrics["train/best_step"] + 2
    )
    board = list(csv.DictReader((next((out_dir / "multiruns").glob("*/*")) / "leaderboard.csv").open()))
    assert board[0]["status"] == "FINISHED" and float(board[0]["best_step"]) == metrics["train/best_step"]
