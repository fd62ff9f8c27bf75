"""Prepared splits as tokenized datasets for the trainer, with truncation counted, and each record's IPCW weight under
task.censoring=ipcw (cadft.data.ipcw: the loss weighs each example by it)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from cadft.config.schema import Head
from cadft.data.ipcw import weights_of
from cadft.errors import CadftError

log = logging.getLogger(__name__)
EXAMPLE_WEIGHT = "example_weight"  # a batch's IPCW weights, beside its labels


@dataclass
class TokenizedSplit(torch.utils.data.Dataset):
    """Token ids and labels of one split; `eids` stay here and are never logged."""

    name: str
    eids: np.ndarray
    labels: np.ndarray
    input_ids: list[list[int]]
    truncated: int
    weights: np.ndarray | None = None  # IPCW weights (task.censoring=ipcw), else None

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> dict:
        item = {"input_ids": self.input_ids[i], "labels": int(self.labels[i])}
        if self.weights is not None:
            item[EXAMPLE_WEIGHT] = float(self.weights[i])
        return item

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]

    def sorted_by_length(self) -> TokenizedSplit:
        """The same examples, longest first: evaluation batches with little padding."""
        order = np.argsort([-len(ids) for ids in self.input_ids], kind="stable")
        return TokenizedSplit(
            self.name,
            self.eids[order],
            self.labels[order],
            [self.input_ids[i] for i in order],
            self.truncated,
            None if self.weights is None else self.weights[order],
        )


def tokenize_split(table: pl.DataFrame, name: str, tokenizer, max_length: int, head: Head) -> TokenizedSplit:
    """The split's records as model inputs (cadft.train.head: the record as it is, or inside the verbalizer prompt)."""
    from cadft.train.head import encode

    if table.height == 0:
        raise CadftError(f"the {name} split is empty: check data.split.fractions and the cohort size")
    encoded = encode(table["text"].to_list(), tokenizer, head, max_length)
    if encoded.truncated:
        log.warning(
            "%s: %d of %d records are longer than train.max_length=%d tokens (longest %d) and are TRUNCATED: "
            "they lose their last features. Raise train.max_length or shorten the text template.",
            name,
            encoded.truncated,
            table.height,
            max_length,
            encoded.longest,
        )
    return TokenizedSplit(
        name,
        table["eid"].to_numpy(),
        table["label"].to_numpy().astype(np.int64),
        encoded.input_ids,
        encoded.truncated,
        weights_of(table),
    )
