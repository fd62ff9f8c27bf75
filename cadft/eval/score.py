"""Positive-class probabilities for records, batched and length-sorted, in inference mode."""

from __future__ import annotations

import numpy as np
import torch

from cadft.config.schema import Head
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
) -> np.ndarray:
    """P(label=1) per text, in input order, each text encoded for the head (cadft.train.head). Sorting by length keeps
    padding (wasted compute) small. The model computes in its own weights' dtype (model.dtype; bf16 on CUDA by
    default): no autocast, so a model loaded in fp32 is scored in fp32, as it was trained."""
    from cadft.train.head import encode

    model.eval()
    encoded = encode(texts, tokenizer, head, max_length).input_ids
    order = np.argsort([-len(ids) for ids in encoded], kind="stable")
    probs = np.empty(len(texts), dtype=np.float64)
    for start in progress(range(0, len(order), batch_size), desc=desc, unit="batch"):
        index = order[start : start + batch_size]
        batch = tokenizer.pad({"input_ids": [encoded[i] for i in index]}, return_tensors="pt").to(device)
        logits = model(**batch).logits
        probs[index] = torch.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy()
    return probs
