"""What the attributions say across the explained participants, per method (a model and its variant):

- global importance: mean |Δlogit| per part of the record, with a percentile bootstrap CI over participants
  (explain.bootstrap resamples at eval.ci_level; the same resamples for every method and the truth);
- direction: mean signed Δlogit by quintile of a number's value (by label for the rest; with or without a history
  item), and Spearman's ρ between value and Δlogit: does the risk rise with blood pressure, fall with HDL?
- agreement with the truth (synthetic cohorts): Spearman's ρ between the method's global importance and the true one
  (mean |true log-hazard contribution|) over the parts both cover, with a bootstrap CI; and the median over
  participants of the rank correlation of their attributions with their true contributions (signed, across parts).
"""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
from scipy.stats import rankdata, spearmanr

QUINTILES = 5
MAX_LABELS = 6  # labels shown per feature in the direction table; the rarer ones are grouped as "other"
TRUTH = ("truth", "log-hazard")  # the truth's (model, variant) in the importance table


def methods(frame: pl.DataFrame) -> list[tuple[str, str]]:
    return [tuple(row) for row in frame.select("model", "variant").unique(maintain_order=True).iter_rows()]


def matrix(frame: pl.DataFrame, eids: list[int], parts: list[str], column: str = "delta_logit") -> np.ndarray:
    """(participant in `eids` order, part in `parts` order) of one method's `column`; NaN where it has none."""
    wide = frame.pivot(on="feature", index="eid", values=column)
    wide = pl.DataFrame({"eid": eids}, schema={"eid": pl.Int64}).join(wide, on="eid", how="left", maintain_order="left")
    return (
        np.column_stack(
            [
                wide[part].cast(pl.Float64).to_numpy() if part in wide.columns else np.full(len(eids), np.nan)
                for part in parts
            ]
        )
        if parts
        else np.empty((len(eids), 0))
    )


def summarize(
    frame: pl.DataFrame,
    eids: list[int],
    parts: list[str],
    values: dict[str, pl.Series],
    truth: pl.DataFrame | None,
    *,
    bootstrap: int,
    ci_level: float,
    seed: int,
) -> dict:
    """importance, direction and (with a truth) agreement; `values` holds each part's value per participant (in
    `eids` order): numbers as floats, labels as strings."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(eids), size=(bootstrap, len(eids))) if eids else np.empty((0, 0), dtype=int)
    tails = (100 * (1 - ci_level) / 2, 100 * (1 + ci_level) / 2)
    matrices = {method: matrix(frame.filter(_is(method)), eids, parts) for method in methods(frame)}
    true = matrix(truth, eids, parts, "contribution") if truth is not None else None
    summary = {"importance": [], "direction": []}
    for (model, variant), values_of in [*matrices.items(), *([(TRUTH, true)] if true is not None else [])]:
        mean, low, high = _importance(values_of, draws, tails)
        summary["importance"] += [
            {"model": model, "variant": variant, "feature": part, "mean_abs_delta_logit": m, "low": lo, "high": hi}
            for part, m, lo, hi in zip(parts, mean, low, high)
            if not np.isnan(m)
        ]
    for (model, variant), values_of in matrices.items():
        for j, part in enumerate(parts):
            if not np.isnan(values_of[:, j]).all():
                summary["direction"].append(
                    {"model": model, "variant": variant, "feature": part, **direction(values[part], values_of[:, j])}
                )
    if true is not None:
        summary["agreement"] = [
            {"model": model, "variant": variant, **agreement(values_of, true, parts, draws, tails)}
            for (model, variant), values_of in matrices.items()
        ]
    return summary


def _is(method: tuple[str, str]) -> pl.Expr:
    return (pl.col("model") == method[0]) & (pl.col("variant") == method[1])


def _importance(values: np.ndarray, draws: np.ndarray, tails: tuple[float, float]):
    """Mean |value| per part, and its bootstrap percentile interval (None where there are no resamples)."""
    absolute = np.abs(values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the mean of a part a method lacks is NaN, as meant
        mean = np.nanmean(absolute, axis=0)
        if draws.size == 0:
            return mean, [None] * len(mean), [None] * len(mean)
        resampled = np.nanmean(absolute[draws], axis=1)
        low, high = np.nanpercentile(resampled, tails, axis=0)
    return mean, low.tolist(), high.tolist()


def direction(value: pl.Series, delta: np.ndarray) -> dict:
    """bins (label, n, mean Δlogit) of a part's value, and Spearman's ρ of value and Δlogit for a number."""
    if value.dtype.is_numeric():
        number = value.cast(pl.Float64).to_numpy()
        present = ~np.isnan(number)
        order = np.flatnonzero(present)[np.argsort(number[present], kind="stable")]
        bins = [
            _bin(f"Q{k + 1}: {number[group[0]]:g}–{number[group[-1]]:g}", delta[group])
            for k, group in enumerate(np.array_split(order, min(QUINTILES, order.size)))
        ]
        if not present.all():
            bins.append(_bin("missing", delta[~present]))
        rho = _spearman(number[present], delta[present])
        return {"bins": bins, "spearman": rho}
    label = value.cast(pl.String).fill_null("missing").to_numpy()
    names, counts = np.unique(label, return_counts=True)
    ranked = [str(name) for name in names[np.lexsort((names, -counts))]]
    shown = ranked[:MAX_LABELS]
    bins = [_bin(name, delta[label == name]) for name in shown]
    if len(ranked) > MAX_LABELS:
        bins.append(_bin("other", delta[~np.isin(label, shown)]))
    return {"bins": bins, "spearman": None}


def _bin(label: str, delta: np.ndarray) -> dict:
    return {"label": label, "n": int(delta.size), "mean_delta_logit": float(np.mean(delta)) if delta.size else None}


def agreement(values: np.ndarray, true: np.ndarray, parts: list[str], draws: np.ndarray, tails) -> dict:
    """The method's agreement with the truth over the parts both cover, for the participants the truth covers."""
    common = [j for j in range(len(parts)) if not np.isnan(true[:, j]).all() and not np.isnan(values[:, j]).all()]
    covered = ~np.isnan(true[:, common]).any(axis=1) & ~np.isnan(values[:, common]).any(axis=1)
    result = {"features": [parts[j] for j in common], "participants": int(covered.sum())}
    if len(common) < 3:
        return result | {"spearman": None, "low": None, "high": None, "participant_rank_correlation_median": None}
    mine, theirs = values[:, common], true[:, common]
    rho = _spearman(np.nanmean(np.abs(mine[covered]), axis=0), np.nanmean(np.abs(theirs[covered]), axis=0))
    low = high = None
    if draws.size:
        kept = [draw[covered[draw]] for draw in draws]
        resampled = [
            _spearman(np.nanmean(np.abs(mine[k]), axis=0), np.nanmean(np.abs(theirs[k]), axis=0)) for k in kept
        ]
        finite = np.array([r for r in resampled if r is not None])
        if finite.size:
            low, high = (float(x) for x in np.percentile(finite, tails))
    per_participant = _row_rank_correlations(mine[covered], theirs[covered])
    median = float(np.nanmedian(per_participant)) if np.isfinite(per_participant).any() else None
    return result | {"spearman": rho, "low": low, "high": high, "participant_rank_correlation_median": median}


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's ρ, None where it is undefined (fewer than 3 values, or one side constant)."""
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(spearmanr(a, b).statistic)


def _row_rank_correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's ρ of each row of a with the same row of b (NaN where a row is constant)."""
    ranks_a, ranks_b = (rankdata(m, axis=1) for m in (a, b))
    ranks_a -= ranks_a.mean(axis=1, keepdims=True)
    ranks_b -= ranks_b.mean(axis=1, keepdims=True)
    scale = np.sqrt((ranks_a**2).sum(axis=1) * (ranks_b**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scale > 0, (ranks_a * ranks_b).sum(axis=1) / scale, np.nan)
