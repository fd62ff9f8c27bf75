"""Scoring records: test-time averaging over K feature orders (eval.test_time_orders) is plain scoring at K=1 and
the mean of the K orders' probabilities otherwise, the first order being the prepared text."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl

from cadft.data.features import parse_features
from cadft.data.prepare import prepare
from cadft.data.text import render_texts
from cadft.eval.score import score_records, score_texts
from cadft.train.backbone import load_tokenizer, resolve_backbone
from cadft.train.model import zero_shot_model


def test_test_time_orders(train_config):
    config = train_config("head=verbalizer")
    rows = prepare(config).table().filter(pl.col("split") == "validation").head(12)
    tokenizer = load_tokenizer(config.backbone, config.paths.cache_dir)
    model = zero_shot_model(resolve_backbone(config.backbone, config.paths.cache_dir), tokenizer, config.head)

    def plain(texts):
        return score_texts(
            model, tokenizer, texts, head=config.head, batch_size=5, max_length=config.train.max_length,
            device="cpu", prefix_reuse=config.eval.prefix_reuse,
        )  # fmt: skip

    config = replace(config, eval=replace(config.eval, batch_size=5))
    assert np.array_equal(score_records(model, tokenizer, rows, config, device="cpu"), plain(rows["text"].to_list()))
    three = replace(config, eval=replace(config.eval, test_time_orders=3))
    orders = [rows["text"].to_list()] + [
        render_texts(rows, parse_features(config.data.features), config.text, order=k, seed=config.seed).to_list()
        for k in (1, 2)
    ]
    assert orders[1] != orders[0] and orders[2] != orders[1]
    expected = np.mean([plain(texts) for texts in orders], axis=0)
    assert np.allclose(score_records(model, tokenizer, rows, three, device="cpu"), expected, rtol=0, atol=1e-12)
    assert not np.allclose(expected, plain(orders[0]), atol=1e-6)  # the orders are read: averaging changes the score
