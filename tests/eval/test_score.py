"""Scoring streams (cadft.eval.score): records are tokenised a chunk at a time, never all at once, and the numbers are
those of tokenising everything first (the same length-sorted batches)."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import torch
from transformers import AutoTokenizer

from cadft.eval import score
from cadft.predict.trained_run import TrainedRun
from cadft.train.head import encode
from cadft.train.model import load_model


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


def test_scoring_streams_and_gives_the_same_numbers(tiny_run, monkeypatch):
    config = TrainedRun(tiny_run).config
    table = json.loads((tiny_run / "prepared.json").read_text())["table"]
    texts = pl.read_parquet(table)["text"].head(96)  # the run's own records
    model = load_model(tiny_run / "model")
    tokenizer = AutoTokenizer.from_pretrained(tiny_run / "model")
    expected = _scored_after_tokenising_everything(model, tokenizer, texts.to_list(), config.head, 16, 128)

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
            model, tokenizer, given, head=config.head, batch_size=16, max_length=128, device="cpu"
        )
        assert np.array_equal(probs, expected)  # bit for bit: the same batches
        assert max(seen) == 32 and sum(seen) == 2 * 96  # lengths in chunks of 32, then each batch of 16
