"""Positive-class probabilities for records, batched and length-sorted, in inference mode, in memory bounded by the
batch (not by the number of records: a UK Biobank extract is 502,000 people).

`prefix_reuse`: the prompt prefix every record shares is computed once and each batch runs only its records' own
tokens over it (cadft.eval.prefix_cache; the same scores). `score_records` averages a record's probability over
eval.test_time_orders orders of its features (the first as prepared; K=1 is plain scoring).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
import torch

from cadft.config.schema import Config, Head
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
    prefix_reuse: bool = False,
) -> np.ndarray:
    """P(label=1) per text, in input order, each text encoded for the head (cadft.train.head). Sorting by length keeps
    padding (wasted compute) small. The model computes in its own weights' dtype (model.dtype; bf16 on CUDA by
    default): no autocast, so a model loaded in fp32 is scored in fp32, as it was trained.

    Streamed: the texts are tokenised LENGTH_CHUNK at a time for their lengths (8 bytes a record are kept) and, with
    `prefix_reuse`, the prefix they all share, then each batch again when it is scored, so the token ids of one batch
    are in memory at a time (tokenising everything first took ~68 KB a record); the batches, hence the numbers, are
    the ones a single tokenisation gives. `texts` may be a polars Series (cadft predict), which keeps them out of
    Python strings until their batch."""
    from cadft.eval.prefix_cache import MIN_PREFIX, prefix_states, score_suffixes, shared_prefix
    from cadft.train.head import encode

    model.eval()
    lengths = np.empty(len(texts), dtype=np.int64)
    first, shared = None, 0  # the first record's ids; the prefix length every record shares with them
    for start in range(0, len(texts), LENGTH_CHUNK):
        index = np.arange(start, min(start + LENGTH_CHUNK, len(texts)))
        chunk = encode(_texts_at(texts, index), tokenizer, head, max_length).input_ids
        lengths[start : start + len(chunk)] = [len(ids) for ids in chunk]
        if prefix_reuse and len(texts) > 1:  # the prefix of all is the shortest of each chunk's with the first
            first = chunk[0] if first is None else first
            in_chunk = shared_prefix([first, *chunk], tokenizer.pad_token_id)
            shared = in_chunk if start == 0 else min(shared, in_chunk)
    states = prefix_states(model, first[:shared]) if shared >= MIN_PREFIX else None
    order = np.argsort(-lengths, kind="stable")
    probs = np.empty(len(texts), dtype=np.float64)
    for start in progress(range(0, len(order), batch_size), desc=desc, unit="batch"):
        index = order[start : start + batch_size]
        encoded = encode(_texts_at(texts, index), tokenizer, head, max_length).input_ids
        if states is None:
            batch = tokenizer.pad({"input_ids": encoded}, return_tensors="pt").to(device)
            logits = model(**batch).logits
        else:
            logits = score_suffixes(model, states, shared, [ids[shared:] for ids in encoded], tokenizer.pad_token_id)
        probs[index] = torch.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy()
    return probs


def score_records(
    model, tokenizer, rows: pl.DataFrame, config: Config, *, device: str, desc: str = "scoring"
) -> np.ndarray:
    """P(label=1) per row of a prepared table (or cadft predict's records), averaged over eval.test_time_orders
    orders of the record's features: the prepared text, then orders drawn from (seed, k, eid) (cadft.data.text), each
    written when it is scored. Probabilities are averaged, so K=1 is score_texts of the prepared text."""
    from cadft.data.features import parse_features
    from cadft.data.text import render_texts

    orders = config.eval.test_time_orders
    features = parse_features(config.data.features) if orders > 1 else []
    total = np.zeros(rows.height, dtype=np.float64)
    for k in range(orders):
        texts = rows["text"] if k == 0 else render_texts(rows, features, config.text, order=k, seed=config.seed)
        total += score_texts(
            model,
            tokenizer,
            texts,
            head=config.head,
            batch_size=config.eval.batch_size,
            max_length=config.train.max_length,
            device=device,
            desc=desc if orders == 1 else f"{desc} (order {k + 1} of {orders})",
            prefix_reuse=config.eval.prefix_reuse,
        )
    return total / orders


def _texts_at(texts: Sequence[str] | pl.Series, index: np.ndarray) -> list[str]:
    if isinstance(texts, pl.Series):
        return texts.gather(index).to_list()
    return [texts[i] for i in index]
