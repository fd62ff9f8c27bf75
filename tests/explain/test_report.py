"""A participant's top reasons: the parts whose removal moved the language model's log-odds most, ties in the
record's order, parts that moved nothing left out; and as the columns cadft predict adds."""

from __future__ import annotations

import polars as pl

from cadft.explain.report import reasons_columns, top_reasons

PARTS = ["age", "sex", "smoking", "hdl"]


def test_top_reasons_by_size_ties_in_record_order_nothing_for_no_change():
    frame = pl.DataFrame(
        {
            "model": ["llm"] * 9 + ["logistic"],
            "variant": ["remove"] * 8 + ["median", "coefficient"],
            "eid": [1, 1, 1, 1, 2, 2, 2, 2, 1, 1],
            "feature": PARTS * 2 + ["hdl", "hdl"],
            "delta_logit": [0.1, -0.5, 0.1, 0.05, 0.0, 0.0, 0.3, 0.0, 9.0, 9.0],
            "delta_risk": [0.01, -0.05, 0.01, 0.005, 0.0, 0.0, 0.03, 0.0, 0.9, 0.9],
        }
    )
    reasons = top_reasons(frame, PARTS, 3)
    assert reasons.filter(pl.col("eid") == 1)["feature"].to_list() == ["sex", "age", "smoking"]  # age before smoking
    assert reasons.filter(pl.col("eid") == 2)["feature"].to_list() == ["smoking"]
    wide = reasons_columns(reasons, pl.Series("eid", [2, 1, 3]), 3)
    assert wide.columns == ["eid"] + [f"reason_{k}{suffix}" for k in (1, 2, 3) for suffix in ("", "_delta_risk")]
    assert wide.row(0) == (2, "smoking", 0.03, None, None, None, None)
    assert wide.row(1)[:3] == (1, "sex", -0.05) and wide.row(2)[1:] == (None,) * 6
