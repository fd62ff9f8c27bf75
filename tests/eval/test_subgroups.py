"""Subgroups: sex, age bands, ethnic groups from the registry's coding, Townsend quintiles; too few cases reported."""

import numpy as np
import polars as pl
import pytest

from cadft.eval.metrics import evaluate_scores
from cadft.eval.subgroups import ethnic_group_labels, subgroup_masks
from tests.eval.test_metrics import eval_config


def test_ethnic_backgrounds_fall_into_their_top_level_groups():
    groups = ethnic_group_labels()
    assert groups["British"] == groups["White"] == "White"
    assert groups["Pakistani"] == "Asian or Asian British" and groups["Caribbean"] == "Black or Black British"
    assert groups["White and Black African"] == "Mixed" and groups["Chinese"] == "Chinese"
    assert groups["Prefer not to answer"] == "Unknown"


def test_masks_for_every_group():
    frame = pl.DataFrame(
        {
            "sex": ["Female", "Male", "Female", None, "Male", "Male", "Female", "Male", "Female", "Male"],
            "age": [39, 45, 55, 65, 70, 41, 52, 61, 68, None],
            "ethnicity": [
                "British",
                "Indian",
                "Irish",
                "African",
                None,
                "Chinese",
                "British",
                "British",
                "Caribbean",
                "Prefer not to answer",
            ],
            "townsend": [-5.0, -4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, None],
        }
    )
    masks = subgroup_masks(frame, (40, 50, 60, 70))
    assert masks["sex"]["Female"].sum() == 4 and "None" not in masks["sex"]
    assert masks["age"]["under_40"].tolist() == [True] + [False] * 9 and masks["age"]["70_plus"].sum() == 1
    assert masks["ethnicity"]["White"].sum() == 4 and masks["ethnicity"]["Black or Black British"].sum() == 2
    assert masks["ethnicity"]["Unknown"].sum() == 2  # a special answer and a missing value
    quintiles = masks["townsend"]
    assert list(quintiles) == ["Q1_least_deprived", "Q2", "Q3", "Q4", "Q5_most_deprived"]
    assert sum(m.sum() for m in quintiles.values()) == 9 and all(m.sum() in (1, 2) for m in quintiles.values())


def test_subgroups_below_the_case_threshold_report_counts_but_no_auroc():
    rng = np.random.default_rng(0)
    n = 3000
    label = (rng.random(n) < 0.05).astype(int)
    prob = np.clip(0.05 + 0.05 * label + rng.normal(0, 0.03, n), 0.001, 0.999)
    frame = pl.DataFrame(
        {
            "eid": np.arange(n),
            "label": label,
            "prob": prob,
            "sex": rng.choice(["Female", "Male"], n),
            "ethnicity": np.where(np.arange(n) < 60, "Chinese", "British"),
            "townsend": rng.normal(size=n),
        }
    )
    metrics = evaluate_scores(
        frame.filter(pl.col("eid") % 2 == 0),
        frame.filter(pl.col("eid") % 2 == 1),
        eval_config(min_subgroup_cases=10),
        seed=0,
    )
    chinese = metrics["test"]["subgroups"]["ethnicity"]["Chinese"]
    assert chinese["n"] == 30 and chinese["auroc"] is None and chinese["note"].startswith("too few cases")
    white = metrics["test"]["subgroups"]["ethnicity"]["White"]
    assert (
        white["auroc"] == pytest.approx(white["auroc"])
        and white["ci"]["auroc"]["low"] < white["auroc"] < white["ci"]["auroc"]["high"]
    )
    assert set(metrics["test"]["subgroups"]) == {"sex", "ethnicity", "townsend"}
