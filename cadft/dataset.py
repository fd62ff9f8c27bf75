"""Prepared splits as tokenized datasets for the trainer, with truncation counted."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from cadft.errors import CadftError

log = logging.getLogger(__name__)


@dataclass
class TokenizedSplit(torch.utils.data.Dataset):
    """Token ids and labels of one split; `eids` stay here and are never logged."""

    name: str
    eids: np.ndarray
    labels: np.ndarray
    input_ids: list[list[int]]
    truncated: int

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.input_ids[i], "labels": int(self.labels[i])}

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]

    def sorted_by_length(self) -> TokenizedSplit:
        """The same examples, longest first: evaluation batches with little padding."""
        order = np.argsort([-len(ids) for ids in self.input_ids], kind="stable")
        return TokenizedSplit(self.name, self.eids[order], self.labels[order], [self.input_ids[i] for i in order], self.truncated)


def subsample(table: pl.DataFrame, limit: int | None, seed: int, method: str = "stratified") -> pl.DataFrame:
    """At most `limit` rows, or the table itself. `stratified` keeps the case fraction; `all_cases` keeps every
    case (up to the limit) and fills with random controls: a case-control sample, more signal per step when
    compute is short, at the price of calibration (predicted risks come out too high; ranking is unaffected).
    Method and limit are checked with the config (cadft.config)."""
    if limit is None or table.height <= limit:
        return table
    if method == "all_cases":
        cases = table.filter(pl.col("label") == 1)
        cases = cases.sample(n=min(limit, cases.height), seed=seed)
        controls = table.filter(pl.col("label") == 0)
        return pl.concat([cases, controls.sample(n=min(limit - cases.height, controls.height), seed=seed)]).sort("eid")
    fraction = limit / table.height
    parts = [part.sample(n=max(1, round(part.height * fraction)), seed=seed) for _, part in table.group_by("label", maintain_order=True)]
    return pl.concat(parts).sort("eid")


def training_records(table: pl.DataFrame, cfg) -> pl.DataFrame:
    """The training split's rows a run trains on (train.max_train_examples, train.subsample, seed): the same rows,
    in the same order, for cadft-train, cadft-eval and the equal-terms baselines."""
    return subsample(table.filter(pl.col("split") == "train"), cfg.train.max_train_examples, int(cfg.seed), cfg.train.subsample)


def tokenize_split(table: pl.DataFrame, name: str, tokenizer, max_length: int, head_cfg=None) -> TokenizedSplit:
    """The split's records as model inputs (cadft.head: the record as it is, or inside the verbalizer prompt)."""
    from cadft.head import encode

    if table.height == 0:
        raise CadftError(f"the {name} split is empty: check data.split.fractions and the cohort size")
    encoded = encode(table["text"].to_list(), tokenizer, head_cfg, max_length)
    if encoded.truncated:
        log.warning(
            "%s: %d of %d records are longer than train.max_length=%d tokens (longest %d) and are TRUNCATED: "
            "they lose their last features. Raise train.max_length or shorten the text template.",
            name, encoded.truncated, table.height, max_length, encoded.longest,
        )
    return TokenizedSplit(name, table["eid"].to_numpy(), table["label"].to_numpy().astype(np.int64), encoded.input_ids, encoded.truncated)
