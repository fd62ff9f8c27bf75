"""The language model against each baseline on the same test participants: paired bootstrap differences.

Both models' reported (recalibrated) risks are resampled together, so the interval of a difference reflects the
correlation between models that share participants; a difference is a finding only when its interval excludes 0.
Under task.censoring=ipcw the test frame's IPCW weights weigh both (cadft.data.ipcw).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from cadft.config.schema import Eval
from cadft.data.ipcw import weights_of
from cadft.eval.bootstrap import paired_differences
from cadft.eval.metrics import recalibrated


def compare_with_baselines(
    metrics: dict, test: pl.DataFrame, baselines: dict[str, tuple[dict, pl.DataFrame]], settings: Eval, *, seed: int
) -> dict:
    """baseline -> {auroc, brier (its test values), delta_auroc, delta_brier ({value, low, high}: model minus
    baseline)}.
    `test` holds the model's raw scores; each baseline frame holds its reported risk (cadft.eval.baselines)."""
    test = test.sort("eid")
    label = test["label"].to_numpy()
    risk = recalibrated(metrics, test["prob"].to_numpy())
    rng = np.random.default_rng(seed)
    comparison = {}
    for name, (baseline_metrics, frame) in baselines.items():
        frame = frame.sort("eid")
        if not frame["eid"].equals(test["eid"]):
            raise ValueError(
                f"baseline {name} scores other participants than the model"
            )  # a programming error, not user input
        differences = paired_differences(
            label,
            risk,
            frame["prob"].to_numpy(),
            resamples=settings.bootstrap,
            level=settings.ci_level,
            rng=rng,
            weight=weights_of(test),
        )
        comparison[name] = {
            "auroc": baseline_metrics["test"]["auroc"],
            "brier": baseline_metrics["test"]["brier"],
            **differences,
        }
    return comparison
