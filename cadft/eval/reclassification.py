"""What a new model changes for the same people, against a reference model: the difference in AUROC, the net
reclassification improvement (NRI) across the guideline risk categories and without categories, and the integrated
discrimination improvement (IDI), each with a paired bootstrap CI (the same resampled participants for both models,
as in cadft.eval.bootstrap).

With events (cases) and non-events (controls), "up" meaning the new risk is higher than the reference's:
- categorical NRI: categories cut at eval.risk_thresholds (a risk at a threshold is in the higher category, as a
  risk >= threshold is flagged); NRI_events = P(up a category | event) − P(down | event), NRI_nonevents =
  P(down | non-event) − P(up | non-event), NRI = the sum (Pencina et al., Stat Med 2008;27:157-172);
- continuous (category-free) NRI: the same with any increase or decrease of the risk (Pencina et al., Stat Med
  2011;30:11-21); its range is −2 to 2;
- IDI = (mean new − mean reference risk among events) − (the same among non-events), the gain in discrimination
  slope.
Risks are compared as probabilities, so both models must be calibrated risks (NRI and IDI reward calibration as
well as ranking): cadft compares a combination with the nested model fitted the same way (cadft.eval.baselines.
incremental). Under task.censoring=ipcw each participant counts with their IPCW weight (the proportions are weighted
ones; the censored before the horizon weigh 0 and are not counted as reclassified), as in cadft.eval.bootstrap.
"""

from __future__ import annotations

import numpy as np

from cadft.eval.bootstrap import ResampledMetrics, draws, percentile_interval

STATISTICS = (
    "delta_auroc",
    "nri",
    "nri_events",
    "nri_nonevents",
    "nri_continuous",
    "nri_continuous_events",
    "nri_continuous_nonevents",
    "idi",
)


def risk_categories(risk: np.ndarray, thresholds: list[float]) -> np.ndarray:
    """The category of each risk: 0 below the first threshold, k at or above the k-th."""
    return np.searchsorted(np.asarray(thresholds, dtype=np.float64), risk, side="right")


class _Changes:
    """Per participant, in class order (cases as they appear in `label`, then controls): categorical and continuous
    moves (+1 up, −1 down, 0 none) and the risk difference; statistics(w_pos, w_neg) for bootstrap count matrices,
    which `weight` (IPCW) multiplies."""

    def __init__(
        self,
        label: np.ndarray,
        reference: np.ndarray,
        new: np.ndarray,
        thresholds: list[float],
        weight: np.ndarray | None = None,
    ):
        moved = np.sign(risk_categories(new, thresholds) - risk_categories(reference, thresholds))
        changed = np.sign(new - reference)
        difference = new - reference
        cases, controls = label == 1, label == 0
        self.pos = (moved[cases], changed[cases], difference[cases])
        self.neg = (moved[controls], changed[controls], difference[controls])
        self.weights = None if weight is None else (weight[cases], weight[controls])
        self.auroc_new, self.auroc_reference = (
            ResampledMetrics(label, new, 0.5, weight),
            ResampledMetrics(label, reference, 0.5, weight),
        )
        self.n_pos, self.n_neg = int(cases.sum()), int(controls.sum())

    def statistics(self, w_pos: np.ndarray, w_neg: np.ndarray) -> np.ndarray:
        """(size, len(STATISTICS)); a resample without events or non-events gives nan (left out of the CI)."""
        auroc = 0  # column of AUROC in cadft.eval.bootstrap.CI_METRICS (ResampledMetrics weighs the draws itself)
        delta_auroc = self.auroc_new(w_pos, w_neg)[:, auroc] - self.auroc_reference(w_pos, w_neg)[:, auroc]
        if self.weights is not None:
            w_pos, w_neg = w_pos * self.weights[0], w_neg * self.weights[1]
        n_pos, n_neg = w_pos.sum(axis=1).astype(np.float64), w_neg.sum(axis=1).astype(np.float64)
        n_pos[n_pos == 0], n_neg[n_neg == 0] = np.nan, np.nan
        (moved_pos, changed_pos, difference_pos), (moved_neg, changed_neg, difference_neg) = self.pos, self.neg
        nri_events, nri_nonevents = w_pos @ moved_pos / n_pos, -(w_neg @ moved_neg) / n_neg
        continuous_events, continuous_nonevents = w_pos @ changed_pos / n_pos, -(w_neg @ changed_neg) / n_neg
        idi = w_pos @ difference_pos / n_pos - w_neg @ difference_neg / n_neg
        return np.column_stack(
            [
                delta_auroc,
                nri_events + nri_nonevents,
                nri_events,
                nri_nonevents,
                continuous_events + continuous_nonevents,
                continuous_events,
                continuous_nonevents,
                idi,
            ]
        )


def reclassification(
    label: np.ndarray,
    reference: np.ndarray,
    new: np.ndarray,
    thresholds: list[float],
    *,
    resamples: int,
    level: float,
    rng: np.random.Generator,
    weight: np.ndarray | None = None,
) -> dict:
    """{statistic: {value, low, high}} of `new` against `reference` on the same participants (CIs None without
    resamples), `reclassified`: events and non-events moved up or down a category, and the thresholds; IPCW-weighted
    with `weight`."""
    label = np.asarray(label)
    changes = _Changes(
        label, np.asarray(reference, dtype=np.float64), np.asarray(new, dtype=np.float64), thresholds, weight
    )
    point = changes.statistics(np.ones((1, changes.n_pos)), np.ones((1, changes.n_neg)))[0]
    result = {name: {"value": float(value), "low": None, "high": None} for name, value in zip(STATISTICS, point)}
    if resamples and changes.n_pos and changes.n_neg:
        stats = np.concatenate(
            [changes.statistics(w_pos, w_neg) for w_pos, w_neg in draws(changes.n_pos, changes.n_neg, resamples, rng)]
        )
        low, high = percentile_interval(stats, level)
        for name, lo, hi in zip(STATISTICS, low, high):
            result[name] |= {"low": float(lo), "high": float(hi)}
    (moved_pos, _, _), (moved_neg, _, _) = changes.pos, changes.neg
    if changes.weights is not None:  # the censored before the horizon (weight 0) have no known outcome to count
        moved_pos, moved_neg = moved_pos * (changes.weights[0] > 0), moved_neg * (changes.weights[1] > 0)
    result["reclassified"] = {
        "events_up": int((moved_pos > 0).sum()),
        "events_down": int((moved_pos < 0).sum()),
        "nonevents_up": int((moved_neg > 0).sum()),
        "nonevents_down": int((moved_neg < 0).sum()),
    }
    result["thresholds"] = [float(t) for t in thresholds]
    return result
