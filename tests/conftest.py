"""Shared fixtures: composed Hydra configs over the shipped conf/, and isolated output/cache dirs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
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
def make_config(tmp_path, cache_dir):
    """compose('config', overrides) with outputs under this test's tmp dir and the session cache."""

    def make(*overrides: str, config_name: str = "config"):
        base = [f"paths.output_dir={tmp_path / 'outputs'}", f"paths.cache_dir={cache_dir}", "backbone=tiny"]
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name, overrides=base + list(overrides), return_hydra_config=False)

    return make
