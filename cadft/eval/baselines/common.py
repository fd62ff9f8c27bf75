"""What every baseline shares: the terms it is fitted on, its scored splits, and the prepared table cut into splits.

A baseline's metrics.json is evaluate_scores' schema plus `baseline`: {name, fitted_on, features, train_records, tuned}
(and, for pce, `imputed_participants`: split -> participants with at least one imputed input).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from cadft.data.followup import FOLLOWUP_COLUMNS
from cadft.data.split import SPLITS
from cadft.errors import CadftError
from cadft.eval.recalibration import TrainingSample
from cadft.eval.subgroups import SUBGROUP_COLUMNS


@dataclass(frozen=True)
class Terms:
    """What the baselines see: the run's features and training eids (equal terms), and everything (the *_all ones)."""

    features: list[str]
    all_features: list[str]
    train_eids: np.ndarray | None = None  # None: the whole training split


@dataclass
class Scored:
    validation: pl.DataFrame  # eid, label, prob (raw score), follow-up and subgroup columns
    test: pl.DataFrame
    info: dict = field(default_factory=dict)  # fitted_on, features, train_records, tuned
    sample: TrainingSample | None = None  # for eval.recalibration=prior_shift


def splits_of(table: pl.DataFrame) -> dict[str, pl.DataFrame]:
    absent = [c for c in ("eid", "label", "split") if c not in table.columns]
    if absent:
        raise CadftError(f"the prepared table lacks column(s) {', '.join(absent)}")
    splits = {name: table.filter(pl.col("split") == name) for name in SPLITS}
    empty = [name for name, rows in splits.items() if rows.height == 0]
    if empty:
        raise CadftError(
            f"the prepared table has no {', '.join(empty)} rows; baselines need train, validation and test"
        )
    if splits["train"]["label"].n_unique() < 2:
        raise CadftError("the train split has only one class: a baseline cannot be fitted")
    return splits


def score_frame(rows: pl.DataFrame, prob: np.ndarray) -> pl.DataFrame:
    columns = [c for c in FOLLOWUP_COLUMNS + SUBGROUP_COLUMNS if c in rows.columns]
    return rows.select("eid", "label", *columns).with_columns(pl.Series("prob", prob, pl.Float64))
