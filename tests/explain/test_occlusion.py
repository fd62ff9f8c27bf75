"""Occlusion of the parts of a record: a tiny model trained where one feature alone decides the label ranks that
feature first; a part whose occlusion leaves the record as it was moves nothing; each occluded record differs from the
whole one in exactly that part."""

from __future__ import annotations

import os

import numpy as np
import polars as pl
import pytest
import torch

from cadft.config import CONF_DIR
from cadft.config.compose import compose
from cadft.config.schema import CLASSIFIER
from cadft.config.validate import load_group_file, validate_group
from cadft.data.features import parse_features
from cadft.data.text import render_texts
from cadft.errors import CadftError
from cadft.eval.recalibration import Recalibrator
from cadft.eval.score import score_texts
from cadft.explain.occlusion import deltas, occlude, record_parts, reference_values

FEATURES = parse_features(
    {
        "age": {"field": 21022},
        "sex": {"field": 31},
        "smoking": {"field": 20116},
        "cholesterol": {"field": 30690, "decimals": 2},
    }
)
IDENTITY = Recalibrator("none", "nothing")


@pytest.fixture(scope="module")
def text():
    return load_group_file(CONF_DIR / "text" / "text.yaml", "text")


def hand_made(n: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "eid": np.arange(1, n + 1),
            "age": rng.integers(40, 71, n).astype(float),
            "sex": rng.choice(["Female", "Male"], n),
            "smoking": rng.choice(["Never", "Current"], n),
            "cholesterol": np.round(rng.normal(5.7, 1.0, n), 2),
        }
    )


def test_a_tiny_model_trained_where_one_feature_decides_the_label_ranks_that_feature_first(text):
    from cadft.train.backbone import load_tokenizer, resolve_backbone
    from cadft.train.head import encode
    from cadft.train.model import build_model

    cfg = compose("config", ["backbone=tiny", "model=full"])
    backbone, cache = validate_group(cfg, "backbone"), os.environ["CADFT_CACHE_DIR"]
    folder, tokenizer = resolve_backbone(backbone, cache), load_tokenizer(backbone, cache)
    table = hand_made(96)
    label = torch.tensor((table["smoking"] == "Current").cast(pl.Int64).to_numpy())  # smoking alone decides
    ids = encode(render_texts(table, FEATURES, text).to_list(), tokenizer, CLASSIFIER, 128).input_ids
    torch.manual_seed(0)
    model = build_model(validate_group(cfg, "model"), folder, tokenizer, head=CLASSIFIER)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small gains nothing from two; on a busy machine they spin-wait for seconds
    try:
        model.train()
        for _ in range(20):
            index = rng.choice(table.height, 16, replace=False)
            batch = tokenizer.pad({"input_ids": [ids[i] for i in index]}, return_tensors="pt")
            model(**batch, labels=label[index]).loss.backward()
            optimizer.step()
            optimizer.zero_grad()

        def score(texts):
            return score_texts(model, tokenizer, texts, head=CLASSIFIER, batch_size=32, max_length=128, device="cpu")

        parts = record_parts(FEATURES, text)
        frame, cost = occlude(table.head(32), FEATURES, text, parts, ["remove"], {}, score)
    finally:
        torch.set_num_threads(threads)
    importance = deltas(frame, IDENTITY).group_by("feature").agg(pl.col("delta_logit").abs().mean())
    ranked = importance.sort("delta_logit", descending=True)["feature"].to_list()
    assert ranked[0] == "smoking", importance
    assert cost.forward_passes == 32 * (1 + 4) and cost.records_scored <= cost.forward_passes


def test_removing_nothing_changes_nothing(text):
    """A part whose occlusion leaves the record as it was (a missing value taken out, a value already at the median or
    the most common label) gets Δ = 0 exactly: identical records are scored once; every other part moves the score."""
    table = hand_made(12).with_columns(
        pl.when(pl.col("eid") <= 3).then(None).otherwise(pl.col("cholesterol")).alias("cholesterol"),
        pl.when(pl.col("eid") == 4).then(pl.lit(57.0)).otherwise(pl.col("age")).alias("age"),
    )
    reference = {"age": 57.0, "sex": "Female", "smoking": "Never", "cholesterol": 5.7}
    scored = []

    def score(texts):  # any model: a different number for every distinct record
        scored.extend(texts)
        return np.linspace(0.1, 0.9, len(texts))

    frame, cost = occlude(table, FEATURES, text, record_parts(FEATURES, text), ["remove", "median"], reference, score)
    frame = deltas(frame, Recalibrator("platt", "validation", {"intercept": -1.0, "slope": 0.5})).join(
        table.select("eid", pl.col("sex").alias("sex_value"), pl.col("smoking").alias("smoking_value")), on="eid"
    )
    nothing_removed = (
        ((pl.col("feature") == "cholesterol") & (pl.col("variant") == "remove") & (pl.col("eid") <= 3))
        | ((pl.col("feature") == "age") & (pl.col("variant") == "median") & (pl.col("eid") == 4))
        | ((pl.col("feature") == "sex") & (pl.col("variant") == "median") & (pl.col("sex_value") == "Female"))
        | ((pl.col("feature") == "smoking") & (pl.col("variant") == "median") & (pl.col("smoking_value") == "Never"))
    )
    unchanged, changed = frame.filter(nothing_removed), frame.filter(~nothing_removed)
    assert unchanged.height == 3 + 1 + (table["sex"] == "Female").sum() + (table["smoking"] == "Never").sum()
    assert (unchanged["delta_logit"] == 0).all() and (unchanged["delta_risk"] == 0).all()
    assert (changed["delta_logit"] != 0).all() and (changed["delta_risk"] != 0).all()
    assert len(scored) == len(set(scored)) == cost.records_scored <= cost.forward_passes - unchanged.height


def test_an_occluded_record_differs_from_the_whole_one_in_exactly_that_part(text):
    table = hand_made(1).with_columns(pl.lit("Current").alias("smoking"), pl.lit(63.0).alias("age"))
    texts = {}

    def score(batch):
        texts.update(dict.fromkeys(batch))
        return np.full(len(batch), 0.5)

    reference = {"age": 57.0, "smoking": "Never"}
    occlude(table, FEATURES, text, ["age", "smoking"], ["remove", "median"], reference, score)
    whole = render_texts(table, FEATURES, text)[0]
    assert "The smoking status is Current." in whole and "The age at recruitment is 63 years." in whole
    assert whole.replace(" The smoking status is Current.", "") in texts  # removed
    assert whole.replace("Current", "Never") in texts  # set to the reference
    assert whole.replace("The age at recruitment is 63 years. ", "") in texts
    assert whole.replace("63 years", "57 years") in texts
    assert len(texts) == 5


def test_reference_values_are_the_training_medians_and_most_common_labels():
    train = pl.DataFrame(
        {
            "age": [40.0, 50.0, None, 70.0],
            "smoking": ["Never", "Current", "Never", None],
            "history:diagnoses": [None, ["Angina"], None, ["Angina", "Gout"]],
        },
        schema_overrides={"history:diagnoses": pl.List(pl.String)},
    )
    values = reference_values(train, FEATURES, ["age", "smoking", "history:diagnoses"])
    assert values == {"age": 50.0, "smoking": "Never", "history:diagnoses": None}  # most have no diagnosis


def test_parts_are_the_text_features_then_the_history_items(text):
    from dataclasses import replace

    assert record_parts(FEATURES, text) == ["age", "sex", "smoking", "cholesterol"]
    assert record_parts(FEATURES, text, ["cholesterol", "age"]) == ["age", "cholesterol"]
    assert record_parts(FEATURES, replace(text, history="on"))[-1] == "history:diagnoses"
    with pytest.raises(CadftError, match=r"explain.features names bmi, which is not part of the record"):
        record_parts(FEATURES, text, ["bmi"])
