"""Scoring (cadft.eval.score) streams: records are tokenised a chunk at a time, never all at once, and the numbers are
those of tokenising everything first (the same length-sorted batches), with the shared prompt prefix computed once or
not. Test-time averaging over K feature orders (eval.test_time_orders) is plain scoring at K=1 and the mean of the K
orders' probabilities otherwise, the first order being the prepared text."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
import torch
from transformers import AutoTokenizer

from cadft.data.features import parse_features
from cadft.data.prepare import prepare
from cadft.data.text import render_texts
from cadft.eval import score
from cadft.eval.prefix_cache import MIN_PREFIX, shared_prefix
from cadft.eval.score import score_records, score_texts
from cadft.predict.trained_run import TrainedRun
from cadft.train.backbone import load_tokenizer, resolve_backbone
from cadft.train.head import encode
from cadft.train.model import load_model, zero_shot_model


def _scored_after_tokenising_everything(model, tokenizer, texts, head, batch_size, max_length) -> np.ndarray:
    """What score_texts did before it streamed: every record's ids first, then the length-sorted batches."""
    encoded = encode(texts, tokenizer, head, max_length).input_ids
    order = np.argsort([-len(ids) for ids in encoded], kind="stable")
    probs = np.empty(len(texts))
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            batch = tokenizer.pad({"input_ids": [encoded[i] for i in index]}, return_tensors="pt")
            probs[index] = torch.softmax(model(**batch).logits.float(), dim=-1)[:, 1].numpy()
    return probs


@pytest.mark.parametrize("prefix_reuse", [False, True], ids=["plain", "prefix"])
def test_scoring_streams_and_gives_the_same_numbers(tiny_run, monkeypatch, prefix_reuse):
    config = TrainedRun(tiny_run).config
    table = json.loads((tiny_run / "prepared.json").read_text())["table"]
    texts = pl.read_parquet(table)["text"].head(96)  # the run's own records
    model = load_model(tiny_run / "model")
    tokenizer = AutoTokenizer.from_pretrained(tiny_run / "model")
    expected = _scored_after_tokenising_everything(model, tokenizer, texts.to_list(), config.head, 16, 128)
    if prefix_reuse:  # the prefix every record shares, found chunk by chunk, is the one of all records at once
        encoded = encode(texts.to_list(), tokenizer, config.head, 128).input_ids
        assert shared_prefix(encoded, tokenizer.pad_token_id) >= MIN_PREFIX

    seen = []
    call = type(tokenizer).__call__

    def counting(self, text, *args, **kwargs):
        seen.append(len(text))
        return call(self, text, *args, **kwargs)

    monkeypatch.setattr(type(tokenizer), "__call__", counting)
    monkeypatch.setattr(score, "LENGTH_CHUNK", 32)
    for given in (texts, texts.to_list()):  # a polars Series (cadft predict) or a list (evaluation)
        seen.clear()
        probs = score.score_texts(
            model, tokenizer, given, head=config.head, batch_size=16, max_length=128, device="cpu",
            prefix_reuse=prefix_reuse,
        )  # fmt: skip
        if prefix_reuse:
            assert probs.tolist() == pytest.approx(expected.tolist(), abs=1e-5)
        else:
            assert np.array_equal(probs, expected)  # bit for bit: the same batches
        assert max(seen) == 32 and sum(seen) == 2 * 96  # lengths in chunks of 32, then each batch of 16


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
