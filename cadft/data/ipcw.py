"""Inverse probability of censoring weights (`task.censoring=ipcw`) and the Kaplan-Meier estimate of censoring they use.

The binary label (an event within the horizon; a competing death is a control under task.competing_death=control) is
known for everyone whose follow-up ends at an event, a death or the horizon, and unknown for a participant censored
before it (lost to follow-up, or the country's hospital data end). Instead of dropping the censored (which biases the
observed risk down, as they are the ones whose events were not seen), each participant whose label is known stands
for the censored like them: weight 1 / G(T-) for an event or a death at T, 1 / G(horizon) for reaching the horizon
event-free, 0 for the censored, where G(t) = P(not censored by t) is a Kaplan-Meier estimate of censoring fitted on the
training split. With G fitted on a group itself, the weighted event rate (1/n) sum(w y) is exactly the Aalen-Johansen
cumulative incidence at the horizon (Kaplan-Meier's 1 - S when nobody died): cadft.eval.survival uses that identity.

Ties: at a time where follow-ups end both with and without censoring, those not censored leave first (the usual
"events before censorings" rule, scikit-survival's CensoringDistributionEstimator); G(T-) excludes censorings at T.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from cadft.data.followup import EVENT, NO_EVENT, STATUS, TIME, WEIGHT


@dataclass(frozen=True)
class CensoringKM:
    """G(t) = P(C > t), a right-continuous step function: `times` (where G may drop) and G after each of them."""

    times: np.ndarray
    values: np.ndarray

    @classmethod
    def fit(cls, time, censored) -> CensoringKM:
        """Kaplan-Meier of the censoring times: `censored` marks the follow-ups that ended by censoring."""
        time, censored = np.asarray(time, dtype=np.float64), np.asarray(censored, dtype=bool)
        times, inverse = np.unique(time, return_inverse=True)
        ending = np.bincount(inverse, minlength=times.size)
        censorings = np.bincount(inverse, weights=censored, minlength=times.size)
        at_risk = ending[::-1].cumsum()[::-1] - (ending - censorings)  # the uncensored at t leave first
        hazard = np.divide(censorings, at_risk, out=np.zeros(times.size), where=censorings > 0)
        return cls(times, np.cumprod(1.0 - hazard))

    def at(self, t) -> np.ndarray:
        """G(t), drops at t included."""
        index = np.searchsorted(self.times, np.asarray(t, dtype=np.float64), side="right") - 1
        return np.where(index >= 0, self.values[np.clip(index, 0, None)], 1.0)

    def before(self, t) -> np.ndarray:
        """G(t-), drops at t excluded."""
        index = np.searchsorted(self.times, np.asarray(t, dtype=np.float64), side="left") - 1
        return np.where(index >= 0, self.values[np.clip(index, 0, None)], 1.0)


def censored_before(time, status, horizon: float) -> np.ndarray:
    """Follow-up that ended by censoring before the horizon: the binary label is unknown."""
    return (np.asarray(status) == NO_EVENT) & (np.asarray(time, dtype=np.float64) < horizon)


def censoring_of_label(time, status, horizon: float) -> CensoringKM:
    """G of the binary label: only loss to follow-up and the data's end censor it (an event, a death or the horizon
    ends follow-up with the label known)."""
    return CensoringKM.fit(time, censored_before(time, status, horizon))


def label_weights(time, status, horizon: float, censoring: CensoringKM) -> np.ndarray:
    """1 / G(T-) for an event or a death at T, 1 / G(horizon) for reaching it event-free, 0 for the censored. A known
    label with G = 0 before it (everyone like them censored first) cannot stand for anyone: weight 0."""
    time = np.asarray(time, dtype=np.float64)
    reached = time >= horizon
    g = np.where(reached, censoring.at(np.full(time.shape, horizon)), censoring.before(time))
    known = ~censored_before(time, status, horizon) & (g > 0)
    return np.where(known, 1.0 / np.where(known, g, 1.0), 0.0)


def with_label_weights(table: pl.DataFrame, horizon: float) -> pl.DataFrame:
    """The prepared table with its `ipcw_weight` column: G fitted on the training split, applied to every split."""
    train = table.filter(pl.col("split") == "train")
    censoring = censoring_of_label(train[TIME].to_numpy(), train[STATUS].to_numpy(), horizon)
    weights = label_weights(table[TIME].to_numpy(), table[STATUS].to_numpy(), horizon, censoring)
    return table.with_columns(pl.Series(WEIGHT, weights, pl.Float64))


def weights_of(rows: pl.DataFrame) -> np.ndarray | None:
    """The rows' IPCW weights, or None when the table has none (task.censoring exclude or control: unweighted)."""
    return rows[WEIGHT].to_numpy() if WEIGHT in rows.columns else None


def weighted_cases(rows: pl.DataFrame) -> tuple[float, float]:
    """(cases, participants) of rows as the binary label counts them: plain counts, or IPCW-weighted sums."""
    weights = weights_of(rows)
    if weights is None:
        return int(rows["label"].sum()), rows.height
    return float(weights @ rows["label"].to_numpy()), float(weights.sum())


def is_event(status) -> np.ndarray:
    return np.asarray(status) == EVENT
