"""Hash split by participant: a participant's split depends only on its eid and the salt (never on the task, the
label, the cohort filter or row order); split by place holds out whole centres or countries."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cadft.config import CONF_DIR
from cadft.config.schema import Split
from cadft.data.prepare import prepare
from cadft.data.split import (
    SplitConfigError,
    assign_splits,
    held_out_groups,
    position,
    split_cohort,
)
from cadft.data.ukb.centres import centre_names, country_of_centre

FRACTIONS = {"train": 0.7, "validation": 0.15, "test": 0.15}
TASKS = sorted(path.stem for path in (CONF_DIR / "task").glob("*.yaml"))


def _table(n=10_000, seed=0):
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "eid": rng.choice(np.arange(1_000_000, 6_000_000), n, replace=False),
            "label": (rng.random(n) < 0.04).astype("int8"),
        }
    )


def _split(**keys):
    return Split(**({"fractions": FRACTIONS, "salt": "s", "by": "eid", "test_groups": None} | keys))


def test_position_is_the_hash_cut_at_the_fractions():
    table = _table()
    split = assign_splits(table, FRACTIONS, "s")
    at = position(table["eid"], "s")
    assert at.min() >= 0 and at.max() < 1
    expected = pl.Series(np.where(at < 0.7, "train", np.where(at < 0.85, "validation", "test")))
    assert (split == expected).all()
    shares = split.value_counts(normalize=True).sort("split")["proportion"].to_list()  # test, train, validation
    assert shares == pytest.approx([0.15, 0.7, 0.15], abs=0.015)  # 10,000 draws: within ~3 standard errors


def test_a_participants_split_depends_only_on_its_eid_and_the_salt():
    table = _table()
    first = table.with_columns(assign_splits(table, FRACTIONS, "s"))
    shuffled = table.sample(fraction=1.0, shuffle=True, seed=3)
    relabelled = shuffled.with_columns((1 - pl.col("label")).alias("label"))  # another task's labels
    subset = table.filter(pl.col("eid") % 3 == 0)  # another cohort filter
    for other in (shuffled, relabelled, subset):
        again = other.with_columns(assign_splits(other, FRACTIONS, "s"))
        joined = again.join(first, on="eid", suffix="_first")
        assert joined.height == other.height and (joined["split"] == joined["split_first"]).all()
    assert first["eid"].n_unique() == len(first)  # each participant in exactly one split


def test_salt_changes_the_split():
    table = _table(1000)
    a, b = assign_splits(table, FRACTIONS, "one"), assign_splits(table, FRACTIONS, "two")
    assert (a != b).sum() > 100


@pytest.mark.parametrize(
    "fractions",
    [
        {"train": 0.8, "validation": 0.3, "test": 0.1},
        {"train": 0.9, "test": 0.1},
        {"train": 0.5, "valid": 0.25, "test": 0.25},
    ],
)
def test_bad_fractions(fractions):
    with pytest.raises(SplitConfigError, match=r"data.split.fractions"):
        assign_splits(_table(100), fractions, "s")


def test_centre_countries():
    assert {code for code in centre_names() if country_of_centre(code) == "Wales"} == {11003, 11022, 11023}
    assert {code for code in centre_names() if country_of_centre(code) == "Scotland"} == {11004, 11005}
    assert country_of_centre(11009) == "England" and country_of_centre(10003) == "England"
    with pytest.raises(KeyError):
        country_of_centre(99999)


def test_held_out_place_is_the_test_split_and_the_rest_is_cut_train_validation():
    table = _table()
    places = table.select("eid", pl.Series("group", np.where(table["eid"] % 10 == 0, "Wales", "England")))
    split, card = split_cohort(table, _split(by="country", test_groups=["Wales"]), places)
    wales = table["eid"] % 10 == 0
    assert (split.filter(wales) == "test").all() and not (split.filter(~wales) == "test").any()
    rest = split.filter(~wales)
    assert (rest == "train").mean() == pytest.approx(0.7 / 0.85, abs=0.015)
    at = position(table["eid"], "s").filter(~wales)
    assert ((at < 0.7 / 0.85) == (rest == "train")).all()
    assert card == {
        "by": "country",
        "salt": "s",
        "test_groups": ["Wales"],
        "participants_by_group": {"England": int((~wales).sum()), "Wales": int(wales.sum())},
        "no_country": 0,
    }


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (
            {"by": "country"},
            "data.split.by=country needs data.split.test_groups: the country group(s) that form the test split, e.g. "
            "[Wales]",
        ),
        ({"by": "country", "test_groups": []}, "data.split.by=country needs data.split.test_groups"),
        (
            {"by": "country", "test_groups": ["Wale"]},
            "data.split.test_groups: ['Wale'] are not countries; allowed: England, Scotland, Wales",
        ),
        (
            {"by": "centre", "test_groups": [11015]},
            "data.split.test_groups: [11015] are not assessment centres (field 54, coding 10); "
            "allowed: 11001 Manchester, 11002 Oxford",
        ),
        (
            {"test_groups": ["Wales"]},
            "data.split.test_groups=['Wales'] needs data.split.by=centre or country (data.split.by=eid splits by hash)",
        ),
    ],
)
def test_bad_place_split(keys, message):
    with pytest.raises(SplitConfigError) as err:
        held_out_groups(_split(**keys))
    assert str(err.value).startswith(message)


def test_centre_names_and_codes_are_the_same_group():
    assert held_out_groups(_split(by="centre", test_groups=["Cardiff", 11003, "swansea"])) == [11003, 11022]


def test_a_test_group_absent_from_the_cohort_is_refused():
    table = _table(100)
    places = table.select("eid", pl.lit("England").alias("group"))
    with pytest.raises(
        SplitConfigError,
        match=r"data.split.test_groups: \['Wales'\] have no participants in the cohort; countries present: "
        r"England \(100\)",
    ):
        split_cohort(table, _split(by="country", test_groups=["Wales"]), places)
    with pytest.raises(SplitConfigError, match="hold the whole cohort"):
        split_cohort(table, _split(by="country", test_groups=["England"]), places)


def test_every_shipped_task_splits_every_participant_the_same_way(make_config, synthetic_cohort, tmp_path):
    """The split of each eid is identical across conf/task/*.yaml (different labels and exclusions), and unchanged
    when the extract's rows are shuffled and filtered."""
    extract, _ = synthetic_cohort
    splits = {}
    for task in TASKS:
        table = prepare(
            make_config(f"data.path={extract}", f"task={task}", "data.allow_treatment_features=true")
        ).table()
        splits[task] = dict(zip(table["eid"], table["split"]))
    assert len(TASKS) == 5  # every shipped task
    everyone = {eid: split for table in splits.values() for eid, split in table.items()}
    for task, table in splits.items():
        assert all(everyone[eid] == split for eid, split in table.items()), task
    assert len(everyone) > 2800 and len({len(t) for t in splits.values()}) > 1  # the cohorts differ, their splits agree
    rows = pl.read_csv(extract, infer_schema=False)
    other = tmp_path / "shuffled.csv"
    rows.filter(pl.col("eid").cast(pl.Int64) % 4 != 0).sample(fraction=1.0, shuffle=True, seed=1).write_csv(other)
    table = prepare(make_config(f"data.path={other}")).table()
    assert table.height < len(splits[TASKS[1]]) and all(
        everyone[eid] == split for eid, split in zip(table["eid"], table["split"])
    )
