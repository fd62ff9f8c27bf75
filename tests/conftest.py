"""Shared fixtures: configs composed over the shipped conf/ (raw, as Hydra composes them, or validated and typed, as
the stages receive them), isolated output/cache dirs, a session cohort and tiny run, and real sweeps over
multirun_templates/ on the tiny backbone through the front door (`python -m cadft train -m ...`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from cadft.config.compose import compose
from cadft.config.validate import validate, with_absolute_paths

REPO = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = REPO / "multirun_templates"
CADFT = [sys.executable, "-m", "cadft"]  # the front door: CADFT + ["train", ...]
# Training sized for seconds per run on the tiny backbone (a few steps, small subsamples, few bootstrap draws, one
# baseline).
TINY_TRAINING = (
    "text.features=[age,sex,systolic_bp,cholesterol,hdl,smoking,diabetes,bp_medication]",
    "train.max_steps=4",
    "train.eval_steps=2",
    "train.save_steps=2",
    "train.logging_steps=1",
    "train.max_train_examples=64",
    "train.max_eval_examples=64",
    "train.max_length=128",
    "eval.bootstrap=50",
    "eval.plots=false",
    "baselines.which=[logistic]",
    "tracking.log_model=adapter",  # the full comparison and the pyfunc model: their own tests
)
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Backbones (the converted SmolLM2, tiny models) are built once per test session, in a fresh cache unless
# CADFT_TEST_CACHE_DIR names one to reuse; subprocesses (the real CLIs) inherit it.
os.environ["CADFT_CACHE_DIR"] = os.environ.get("CADFT_TEST_CACHE_DIR") or tempfile.mkdtemp(prefix="cadft-test-cache-")


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    return Path(os.environ["CADFT_CACHE_DIR"])


@pytest.fixture
def compose_config(tmp_path, cache_dir):
    """The raw composed config (a DictConfig, as Hydra gives it, not validated) of overrides, with outputs under this
    test's tmp dir, the session cache and the tiny backbone."""

    def make(*overrides: str, config_name: str = "config"):
        base = [f"paths.output_dir={tmp_path / 'outputs'}", f"paths.cache_dir={cache_dir}", "backbone=tiny"]
        return compose(config_name, base + list(overrides))

    return make


@pytest.fixture
def make_config(compose_config):
    """The typed config of overrides, validated with absolute paths: what `cadft train` hands its stages."""

    def make(*overrides: str, config_name: str = "config"):
        return with_absolute_paths(validate(compose_config(*overrides, config_name=config_name)))

    return make


@pytest.fixture(scope="session")
def synthetic_cohort(tmp_path_factory) -> tuple[Path, Path]:
    """(extract, oracle) of a small cadft-synth cohort, written once per session by the real CLI."""
    from cadft.cli.synth import main as synth

    folder = tmp_path_factory.mktemp("synthetic")
    extract = folder / "ukb_synthetic.csv"
    assert synth(["--n", "3000", "--seed", "0", "--out", str(extract)]) == 0
    return extract, folder / "ukb_synthetic.oracle.csv"


@pytest.fixture(scope="session")
def prepared_dir(tmp_path_factory) -> Path:
    """One prepared-data cache for the session: tests on the same cohort and config prepare once."""
    return tmp_path_factory.mktemp("prepared")


@pytest.fixture
def train_config(make_config, synthetic_cohort, prepared_dir):
    """A composed training config on the tiny backbone and the session cohort, sized for seconds per run."""
    extract, oracle = synthetic_cohort

    def make(*overrides: str):
        return make_config(
            f"data.path={extract}",
            f"data.oracle_path={oracle}",
            f"paths.prepared_dir={prepared_dir}",
            *TINY_TRAINING,
            *overrides,
        )

    return make


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, synthetic_cohort, prepared_dir, cache_dir) -> Path:
    """One finished tiny training run for the session (its pyfunc model logged), for tests that read or apply a run;
    a test that changes it works on a copy (copy_run)."""
    from cadft.train.run import run_training

    extract, oracle = synthetic_cohort
    root = tmp_path_factory.mktemp("tiny-run")
    cfg = compose(
        "config",
        [
            f"paths.output_dir={root / 'outputs'}",
            f"paths.cache_dir={cache_dir}",
            "backbone=tiny",
            f"data.path={extract}",
            f"data.oracle_path={oracle}",
            f"paths.prepared_dir={prepared_dir}",
            *TINY_TRAINING,
            "tracking.log_model=pyfunc",
        ],
    )
    run_training(with_absolute_paths(validate(cfg)), root / "run")
    return root / "run"


@pytest.fixture(scope="session")
def tiny_explanation(tiny_run, tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """(run, out dir, finished process) of the real `cadft explain` on a copy of the session's tiny run (its MLflow run
    is the tiny run's), 16 participants of test: for tests that read explanations or compare with them."""
    root = tmp_path_factory.mktemp("tiny-explain")
    run = Path(shutil.copytree(tiny_run, root / "run"))
    command = [*CADFT, "explain", f"run={run}", "explain.n=16", "explain.bootstrap=50", "eval.plots=true"]
    done = subprocess.run([*command, f"out={root / 'explain'}"], capture_output=True, text=True, cwd=root, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return run, root / "explain", done


@pytest.fixture
def copy_run(tiny_run, tmp_path) -> Path:
    """This test's own copy of the session's tiny run folder (its MLflow run is shared: read it, don't change it)."""
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


@pytest.fixture(scope="session")
def run_sweep(synthetic_cohort):
    """run_sweep(out_dir, template, *overrides): the real `cadft train -m` over a multirun template on the tiny
    backbone and the session cohort, with its own output dir (MLflow store, prepared cache, sweep dirs)."""
    extract, oracle = synthetic_cohort

    def run(out_dir: Path, template: str, *overrides: str) -> subprocess.CompletedProcess:
        command = [
            *CADFT,
            "train",
            "-m",
            "--config-dir",
            str(TEMPLATES_DIR),
            "--config-name",
            template,
            "backbone=tiny",
            f"data.path={extract}",
            f"data.oracle_path={oracle}",
            f"paths.output_dir={out_dir}",
            *TINY_TRAINING,
            *overrides,
        ]
        done = subprocess.run(command, capture_output=True, text=True, cwd=out_dir.parent, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done

    return run


@pytest.fixture(scope="session")
def tiny_sweep(run_sweep, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """(output dir, finished process) of the strategies template cut to 2 LoRA jobs, the second bound to fail
    (imbalance.positive_fraction=2 composes, and the job refuses it when it starts)."""
    out_dir = tmp_path_factory.mktemp("tiny_sweep") / "outputs"
    out_dir.mkdir()
    done = run_sweep(
        out_dir, "sweep_strategies", "model=lora", "imbalance=oversample", "imbalance.positive_fraction=0.5,2"
    )
    return out_dir, done
