"""Positive-class probabilities for records, batched and length-sorted, in inference mode.

`prefix_reuse`: the prompt prefix every record shares is computed once and each batch runs only its records' own
tokens over it (cadft.eval.prefix_cache; the same scores). `score_records` averages a record's probability over
eval.test_time_orders orders of its features (the first as prepared; K=1 is plain scoring).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from cadft.config.schema import Config, Head
from cadft.progress import progress


@torch.inference_mode()
def score_texts(
    model,
    tokenizer,
    texts: list[str],
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
    default): no autocast, so a model loaded in fp32 is scored in fp32, as it was trained."""
    from cadft.eval.prefix_cache import MIN_PREFIX, prefix_states, score_suffixes, shared_prefix
    from cadft.train.head import encode

    model.eval()
    encoded = encode(texts, tokenizer, head, max_length).input_ids
    order = np.argsort([-len(ids) for ids in encoded], kind="stable")
    shared = shared_prefix(encoded, tokenizer.pad_token_id) if prefix_reuse else 0
    states = prefix_states(model, encoded[0][:shared]) if shared >= MIN_PREFIX else None
    probs = np.empty(len(texts), dtype=np.float64)
    for start in progress(range(0, len(order), batch_size), desc=desc, unit="batch"):
        index = order[start : start + batch_size]
        if states is None:
            batch = tokenizer.pad({"input_ids": [encoded[i] for i in index]}, return_tensors="pt").to(device)
            logits = model(**batch).logits
        else:
            suffixes = [encoded[i][shared:] for i in index]
            logits = score_suffixes(model, states, shared, suffixes, tokenizer.pad_token_id)
        probs[index] = torch.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy()
    return probs


def score_records(
    model, tokenizer, rows: pl.DataFrame, config: Config, *, device: str, desc: str = "scoring"
) -> np.ndarray:
    """P(label=1) per row of a prepared table (or cadft predict's records), averaged over eval.test_time_orders
    orders of the record's features: the prepared text, then orders drawn from (seed, k, eid) (cadft.data.text).
    Probabilities are averaged, so K=1 is score_texts of the prepared text."""
    orders = [rows["text"].to_list()]
    if config.eval.test_time_orders > 1:
        from cadft.data.features import parse_features
        from cadft.data.text import render_texts

        features = parse_features(config.data.features)
        orders += [
            render_texts(rows, features, config.text, order=k, seed=config.seed).to_list()
            for k in range(1, config.eval.test_time_orders)
        ]
    scores = [
        score_texts(
            model,
            tokenizer,
            texts,
            head=config.head,
            batch_size=config.eval.batch_size,
            max_length=config.train.max_length,
            device=device,
            desc=desc if len(orders) == 1 else f"{desc} (order {k + 1} of {len(orders)})",
            prefix_reuse=config.eval.prefix_reuse,
        )
        for k, texts in enumerate(orders)
    ]
    return np.mean(scores, axis=0)
