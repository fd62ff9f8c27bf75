"""Fixtures of the training tests: the tiny backbone, and one typed config group."""

from __future__ import annotations

import os

import pytest

from cadft.config.compose import compose
from cadft.config.validate import validate_group
from cadft.train.backbone import load_tokenizer, resolve_backbone


def compose_group(option: str, overrides: list[str] = ()):
    """One group of the full composed config, typed, `model/qlora` picking the option, with `key=value` overrides
    inside it."""
    group, choice = option.split("/")
    cfg = compose("config", [f"{group}={choice}", *(f"{group}.{o}" for o in overrides)])
    return validate_group(cfg, group)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """(backbone folder, tokenizer) of the tiny backbone."""
    cache_dir = os.environ.get("CADFT_CACHE_DIR") or str(tmp_path_factory.mktemp("cadft-cache"))
    cfg = compose_group("backbone/tiny")
    return resolve_backbone(cfg, cache_dir), load_tokenizer(cfg, cache_dir)
