"""Positive-class probabilities for records, batched and length-sorted, in inference mode, in memory bounded by the
batch (not by the number of records: a UK Biobank extract is 502,000 people)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
import torch

from cadft.config.schema import Head
from cadft.progress import progress

LENGTH_CHUNK = 1024  # records tokenised at a time to learn their lengths, then let go (~50 MB of Python ints)


@torch.inference_mode()
def score_texts(
    model,
    tokenizer,
    texts: Sequence[str] | pl.Series,
    *,
    head: Head,
    batch_size: int,
    max_length: int,
    device: str,
    desc: str = "scoring",
) -> np.ndarray:
    """P(label=1) per text, in input order, each text encoded for the head (cadft.train.head). Sorting by length keeps
    padding (wasted compute) small. The model computes in its own weights' dtype (model.dtype; bf16 on CUDA by
    default): no autocast, so a model loaded in fp32 is scored in fp32, as it was trained.

    Streamed: the texts are tokenised LENGTH_CHUNK at a time for their lengths only (8 bytes a record are kept), then
    each batch again when it is scored, so the token ids of one batch are in memory at a time (tokenising everything
    first took ~68 KB a record); the batches, hence the numbers, are the ones a single tokenisation gives. `texts`
    may be a polars Series (cadft predict), which keeps them out of Python strings until their batch."""
    from cadft.train.head import encode

    model.eval()
    lengths = np.empty(len(texts), dtype=np.int64)
    for start in range(0, len(texts), LENGTH_CHUNK):
        chunk = _texts_at(texts, np.arange(start, min(start + LENGTH_CHUNK, len(texts))))
        lengths[start : start + len(chunk)] = [len(ids) for ids in encode(chunk, tokenizer, head, max_length).input_ids]
    order = np.argsort(-lengths, kind="stable")
    probs = np.empty(len(texts), dtype=np.float64)
    for start in progress(range(0, len(order), batch_size), desc=desc, unit="batch"):
        index = order[start : start + batch_size]
        encoded = encode(_texts_at(texts, index), tokenizer, head, max_length).input_ids
        batch = tokenizer.pad({"input_ids": encoded}, return_tensors="pt").to(device)
        logits = model(**batch).logits
        probs[index] = torch.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy()
    return probs


def _texts_at(texts: Sequence[str] | pl.Series, index: np.ndarray) -> list[str]:
    if isinstance(texts, pl.Series):
        return texts.gather(index).to_list()
    return [texts[i] for i in index]
