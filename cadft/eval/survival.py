"""Censoring-aware measures of a 10-year risk on everyone with follow-up: how deployed risk scores are validated.

metrics.json's `survival` block of a split (incident tasks; cadft.eval.metrics calls survival_metrics):
- `participants`, `events` (by the horizon), `competing_deaths`, `censored_before_horizon` (lost or the country's
  data end), `reached_horizon` (event-free).
- `observed_risk`: the split's observed 10-year risk, the Aalen-Johansen cumulative incidence at the horizon (a
  competing death is no event, as in the binary label; Kaplan-Meier's 1 - S(horizon) when nobody died); `mean_risk`
  (the reported risk, every participant); `oe_ratio` = observed_risk / mean_risk.
- `harrell_c`: Harrell's C on the follow-up time (a pair is comparable when the earlier time is an event; a death ends
  follow-up, censored, as lifelines and scikit-survival count it).
- `uno_c`: Uno's C truncated at the horizon: Harrell's pairs with an event before the horizon, each weighted by
  1 / G(T-)^2, G the Kaplan-Meier of follow-up ending without an event, fitted on the TRAINING split (Uno et al.,
  Stat Med 2011); it does not depend on the censoring of the split itself.
- `brier_ipcw`: the Brier score at the horizon with inverse probability of censoring weights (Graf et al. 1999):
  (1/n) sum w_i (y_i - risk_i)^2 over all n, w from cadft.data.ipcw with G fitted on the TRAINING split (0 for the
  censored, who stay in n).
- `deciles`: the calibration table on equal-count bins of reported risk (the same bins as the binary `deciles`): n,
  events, censored, mean_risk and `observed` (Aalen-Johansen within the bin) with a Wilson 95% interval on the
  bin's effective size (sum w)^2 / sum w^2.
- `censoring`: {`fitted_on`: "train", `participants`, `censored_before_horizon`} of the training split's G.

Risk is the reported (recalibrated) 10-year risk: higher means an earlier event. Concordance is computed in
O(n log n) (a Fenwick tree over risk ranks, from the latest time back); ties in risk count one half, and an event and
a censoring at the same time are comparable (the event came first), as in lifelines.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.stats import norm

from cadft.data.followup import COMPETING_DEATH, EVENT, STATUS, TIME
from cadft.data.ipcw import CensoringKM, censored_before, censoring_of_label, label_weights


@dataclass(frozen=True)
class TrainingCensoring:
    """The training split's Kaplan-Meier estimates of censoring: of the binary label (loss and data end) for the IPCW
    Brier score, and of any end without an event (deaths too) for Uno's C."""

    horizon: float
    of_label: CensoringKM
    of_events: CensoringKM
    participants: int
    censored: int

    @classmethod
    def fit(cls, time, status, horizon: float) -> TrainingCensoring:
        time, status = np.asarray(time, dtype=np.float64), np.asarray(status)
        return cls(
            horizon,
            censoring_of_label(time, status, horizon),
            CensoringKM.fit(time, status != EVENT),
            int(time.size),
            int(censored_before(time, status, horizon).sum()),
        )


def training_censoring(table: pl.DataFrame, horizon: float) -> TrainingCensoring | None:
    """The censoring of the table's training split, or None when the table has no follow-up (a prevalent outcome,
    seed-JSON records): then metrics.json has no survival blocks."""
    if TIME not in table.columns:
        return None
    train = table.filter(pl.col("split") == "train")
    return TrainingCensoring.fit(train[TIME].to_numpy(), train[STATUS].to_numpy(), horizon)


def survival_metrics(time, status, risk, censoring: TrainingCensoring, bins: int) -> dict:
    """The split's `survival` block (module docstring)."""
    time, status, risk = np.asarray(time, dtype=np.float64), np.asarray(status), np.asarray(risk, dtype=np.float64)
    horizon = censoring.horizon
    event = status == EVENT
    label = (event & (time <= horizon)).astype(np.float64)
    observed = observed_risk(time, status, horizon)
    mean_risk = float(risk.mean())
    weights = label_weights(time, status, horizon, censoring.of_label)
    return {
        "horizon_years": horizon,
        "participants": int(time.size),
        "events": int(label.sum()),
        "competing_deaths": int((status == COMPETING_DEATH).sum()),
        "censored_before_horizon": int(censored_before(time, status, horizon).sum()),
        "reached_horizon": int(((time >= horizon) & ~event).sum()),
        "observed_risk": observed,
        "mean_risk": mean_risk,
        "oe_ratio": observed / mean_risk if mean_risk > 0 else None,
        "harrell_c": harrell_c(time, event, risk),
        "uno_c": uno_c(time, event, risk, horizon, censoring.of_events),
        "brier_ipcw": float(np.mean(weights * (label - risk) ** 2)),
        "deciles": observed_by_decile(time, status, risk, horizon, bins),
        "censoring": {
            "fitted_on": "train",
            "participants": censoring.participants,
            "censored_before_horizon": censoring.censored,
        },
    }


def observed_risk(time, status, horizon: float) -> float:
    """Aalen-Johansen cumulative incidence of the event at the horizon (competing deaths are no events), through its
    IPCW form with the group's own Kaplan-Meier of censoring (cadft.data.ipcw)."""
    weights = label_weights(time, status, horizon, censoring_of_label(time, status, horizon))
    label = (np.asarray(status) == EVENT) & (np.asarray(time, dtype=np.float64) <= horizon)
    return float(weights @ label / len(weights))


def observed_by_decile(time, status, risk, horizon: float, bins: int) -> list[dict]:
    """Equal-count bins of risk (as cadft.eval.metrics.decile_table cuts them): the observed 10-year risk of each
    from its own follow-up, beside its mean predicted risk."""
    order = np.argsort(risk, kind="stable")
    rows = []
    for index in np.array_split(order, min(bins, len(order))):
        t, s = time[index], status[index]
        weights = label_weights(t, s, horizon, censoring_of_label(t, s, horizon))
        observed = float(weights @ ((s == EVENT) & (t <= horizon)) / len(index))
        effective = weights.sum() ** 2 / (weights**2).sum() if weights.any() else 0.0
        low, high = wilson_interval(observed, effective)
        rows.append(
            {
                "n": len(index),
                "events": int(((s == EVENT) & (t <= horizon)).sum()),
                "censored": int(censored_before(t, s, horizon).sum()),
                "observed": observed,
                "observed_low": low,
                "observed_high": high,
                "mean_risk": float(risk[index].mean()),
            }
        )
    return rows


def wilson_interval(proportion: float, n: float, level: float = 0.95) -> tuple[float | None, float | None]:
    """Wilson score interval of a proportion observed on (an effective) n; None without anyone."""
    if n <= 0:
        return None, None
    z = norm.ppf(0.5 + level / 2)
    centre = (proportion + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(max(proportion * (1 - proportion), 0.0) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, min(proportion, centre - half)), min(1.0, max(proportion, centre + half))  # (rounding at 0 and 1)


def harrell_c(time, event, risk) -> float | None:
    """Harrell's C; None without a comparable pair."""
    time, event = np.asarray(time, dtype=np.float64), np.asarray(event, dtype=bool)
    return _concordance(time, event, np.asarray(risk, dtype=np.float64), event.astype(np.float64))


def uno_c(time, event, risk, tau: float, censoring: CensoringKM) -> float | None:
    """Uno's C truncated at tau: pairs whose earlier time is an event before tau, weighted 1 / G(T-)^2 with G the
    censoring of follow-up (any end without an event) on the training split; None without a comparable pair. An event
    whose G(T-) is 0 (everyone like them censored first) cannot be weighted and is left out."""
    time, event = np.asarray(time, dtype=np.float64), np.asarray(event, dtype=bool)
    g = censoring.before(time)
    counted = event & (time < tau) & (g > 0)
    weights = np.where(counted, 1.0 / np.square(np.where(counted, g, 1.0)), 0.0)
    return _concordance(time, event, np.asarray(risk, dtype=np.float64), weights)


def _concordance(time: np.ndarray, event: np.ndarray, risk: np.ndarray, weights: np.ndarray) -> float | None:
    """sum_i w_i #{j comparable, risk_j < risk_i} (+ half the ties) / sum_i w_i #{j comparable}, over events i; j is
    comparable to i when T_j > T_i, or T_j = T_i and j had no event."""
    ranks = np.unique(risk, return_inverse=True)[1] + 1  # 1..K, equal risks share a rank
    size = int(ranks.max()) if ranks.size else 0
    tree = [0] * (size + 1)
    order = np.lexsort((event, -time))  # latest time first; at a time, those without an event first
    sorted_time = time[order]
    bounds = np.flatnonzero(np.r_[True, sorted_time[1:] != sorted_time[:-1], True]).tolist()
    order, ranks, event, weights = order.tolist(), ranks.tolist(), event.tolist(), weights.tolist()
    numerator = denominator = 0.0
    inserted = 0
    for start, stop in itertools.pairwise(bounds):
        group = order[start:stop]
        for j in group:  # no event at this time: comparable to the events at this time
            if not event[j]:
                _add(tree, ranks[j])
                inserted += 1
        for i in group:
            if event[i] and weights[i] > 0:
                below = _prefix(tree, ranks[i] - 1)
                tied = _prefix(tree, ranks[i]) - below
                numerator += weights[i] * (below + 0.5 * tied)
                denominator += weights[i] * inserted
        for i in group:
            if event[i]:
                _add(tree, ranks[i])
                inserted += 1
    return numerator / denominator if denominator > 0 else None


def _add(tree: list[int], rank: int) -> None:
    while rank < len(tree):
        tree[rank] += 1
        rank += rank & -rank


def _prefix(tree: list[int], rank: int) -> int:
    total = 0
    while rank > 0:
        total += tree[rank]
        rank -= rank & -rank
    return total
