"""Training subsamples and tokenized splits (truncation is counted and warned about)."""

from __future__ import annotations

import logging

import polars as pl
import pytest

from cadft.data.subsample import subsample
from cadft.errors import CadftError
from cadft.train.backbone import load_tokenizer
from cadft.train.dataset import tokenize_split

TABLE = pl.DataFrame(
    {"eid": range(1000), "label": [1 if i % 25 == 0 else 0 for i in range(1000)], "text": ["x"] * 1000}
)


def test_stratified_subsample_keeps_prevalence():
    part = subsample(TABLE, 200, seed=0)
    assert part.height == 200 and part["label"].sum() == 8 and part["eid"].is_unique().all()
    assert subsample(TABLE, None, seed=0) is TABLE and subsample(TABLE, 5000, seed=0) is TABLE


def test_all_cases_subsample_is_case_control():
    part = subsample(TABLE, 100, seed=0, method="all_cases")
    assert part.height == 100 and part["label"].sum() == 40


def test_none_is_the_whole_training_split_whatever_the_limit(make_config):
    """train.subsample=none: every training record (the demo's max_train_examples is not used); the learning-curve
    template reaches it with train.max_train_examples=null."""
    from omegaconf import OmegaConf

    from cadft.data.subsample import training_records
    from tests.conftest import TEMPLATES_DIR

    table = TABLE.with_columns(pl.Series("split", ["train", "validation", "test", "train"] * 250))
    whole = table.filter(pl.col("split") == "train")
    assert training_records(table, make_config("train.subsample=none", "train.max_train_examples=64")).equals(whole)
    assert training_records(table, make_config("train.max_train_examples=null")).equals(whole)
    assert subsample(TABLE, 10, seed=0, method="none") is TABLE
    swept = OmegaConf.load(TEMPLATES_DIR / "learning_curve.yaml").hydra.sweeper.params["train.max_train_examples"]
    assert swept.split(",")[-1] == "null"


def test_truncation_is_counted_and_warned(make_config, caplog):
    cfg = make_config()
    tokenizer = load_tokenizer(cfg.backbone, cfg.paths.cache_dir)
    rows = pl.DataFrame(
        {"eid": [1, 2], "label": [0, 1], "text": ["The age at recruitment is 63 years. " * 20, "The sex is Male."]}
    )
    with caplog.at_level(logging.WARNING):
        split = tokenize_split(rows, "train", tokenizer, max_length=32, head=cfg.head)
    assert split.truncated == 1 and max(split.lengths) == 32
    assert "1 of 2 records are longer than train.max_length=32 tokens" in caplog.text and "TRUNCATED" in caplog.text
    with pytest.raises(CadftError, match="the validation split is empty"):
        tokenize_split(rows.head(0), "validation", tokenizer, max_length=32, head=cfg.head)
