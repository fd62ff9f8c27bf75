"""Class weights and the training sampler: what each imbalance option applies, draws and groups."""

from __future__ import annotations

import numpy as np
import pytest

from cadft.config import schema
from cadft.errors import CadftError
from cadft.train.imbalance import GroupedSampler, resolve_imbalance

LABELS = np.array([1] * 40 + [0] * 960)


def _cfg(**kw):
    return schema.Imbalance(
        **({"method": "weighted", "class_weights": "inverse_frequency", "positive_fraction": None} | kw)
    )


def test_inverse_frequency_weights():
    applied = resolve_imbalance(_cfg(), LABELS)
    assert applied.class_weights == pytest.approx((1000 / 1920, 1000 / 80))
    assert applied.as_params()["imbalance.applied.weight_case"] == 12.5


def test_oversample_applies_no_weights_unless_configured():
    plain = resolve_imbalance(_cfg(method="oversample", class_weights=None, positive_fraction=0.25), LABELS)
    assert plain.class_weights == (1.0, 1.0) and plain.positive_fraction == 0.25
    both = resolve_imbalance(_cfg(method="oversample", class_weights=[1.0, 3.0], positive_fraction=0.25), LABELS)
    assert both.class_weights == (1.0, 3.0)
    assert resolve_imbalance(_cfg(method="none", class_weights=None), LABELS).class_weights == (1.0, 1.0)


@pytest.mark.parametrize(
    ("cfg", "labels", "message"),
    [
        (_cfg(), np.zeros(10), "0 cases among 10"),
        (_cfg(), np.zeros(0), "training split is empty"),
    ],
)
def test_bad_settings(cfg, labels, message):
    with pytest.raises(CadftError, match=message):
        resolve_imbalance(cfg, labels)


def _sampler(method, *, world_size=1, batch_size=8, fraction=0.25, seed=0):
    rng = np.random.default_rng(1)
    lengths = rng.integers(150, 260, len(LABELS)).tolist()
    cfg = _cfg(
        method=method, class_weights=None if method != "weighted" else "inverse_frequency", positive_fraction=fraction
    )
    return GroupedSampler(
        lengths, LABELS, resolve_imbalance(cfg, LABELS), batch_size=batch_size, world_size=world_size, seed=seed
    ), lengths


def test_every_example_once_per_epoch_without_oversampling():
    for method in ("weighted", "none"):
        sampler, _ = _sampler(method)
        assert sorted(sampler) == list(range(len(LABELS)))


def test_oversampled_fraction_and_distinct_draws_per_step():
    sampler, _ = _sampler("oversample", world_size=2, batch_size=8)
    order = np.array(list(sampler))
    assert len(order) == len(LABELS)
    assert LABELS[order].mean() == pytest.approx(0.25, abs=0.002)
    for start in range(0, len(order) - 15, 16):  # one step = 2 ranks x 8: no participant twice
        step = order[start : start + 16]
        assert len(set(step.tolist())) == len(step)
    counts = np.bincount(order[LABELS[order] == 1], minlength=40)[:40]
    assert counts.max() - counts.min() <= 1  # cases cycle: none drawn twice before all drawn once


def test_same_order_on_every_rank_and_new_order_per_epoch():
    a, _ = _sampler("oversample", world_size=2)
    b, _ = _sampler("oversample", world_size=2)
    assert list(a) == list(b)
    b.set_epoch(1)
    assert list(a) != list(b)


def test_length_grouping_keeps_padding_small():
    sampler, lengths = _sampler("weighted", batch_size=8)
    order = list(sampler)
    lengths = np.array(lengths)
    padded = sum(len(b) * lengths[b].max() for b in (np.array(order[i : i + 8]) for i in range(0, len(order), 8)))
    assert 1 - lengths.sum() / padded < 0.05
