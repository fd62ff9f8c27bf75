"""cadft prepare: the prepared table, the data card, the cache, atomic output, and bad input."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import polars as pl
import pytest

from cadft.data.prepare import feature_columns, prepare
from cadft.errors import CadftError
from tests.conftest import CADFT
from tests.edge_cases import EDGE_CASES, people
from tests.extracts import base_person, write_rap, write_showcase


def _cohort(n_controls: int = 80) -> list[dict]:
    controls = [base_person(2000000 + i, sex=i % 2, age=40 + i % 30) for i in range(n_controls)]
    return people() + controls


@pytest.fixture
def extract(tmp_path) -> Path:
    return write_showcase(tmp_path / "cohort.csv", _cohort())


def test_table_and_card(make_config, extract):
    prepared = prepare(make_config(f"data.path={extract}"))
    table = prepared.table()
    assert table.columns[:4] == ["eid", "label", "split", "text"]
    assert "systolic_bp" in table.columns and table["eid"].is_unique().all()
    excluded = {case[0]["eid"] for case in EDGE_CASES.values() if isinstance(case[1], str)}
    assert not set(table["eid"]) & excluded
    cases = {case[0]["eid"] for case in EDGE_CASES.values() if case[1] == 1}
    assert set(table.filter(pl.col("label") == 1)["eid"]) == cases
    card = prepared.card
    assert card["included"] == table.height and card["cases"] == len(cases)
    # incomplete_followup, lost_to_followup and history_code: the default censoring and history_policy
    # (tests/edge_cases.py)
    assert card["exclusions"] == {
        "history_code": 1,
        "incomplete_followup": 1,
        "lost_to_followup": 1,
        "prevalent": 6,
        "undated_event": 2,
    }
    assert [s["excluded"] for s in card["cohort_steps"] if "excluded" in s] == [0, 0, 2, 6, 1, 2, 0]
    assert sum(s["n"] for s in card["splits"].values()) == table.height
    assert card["text"]["tokens"]["p50"] > 20 and card["missingness"]["pack_years"] == 1.0
    text = table.filter(eid=1000003)["text"].item()
    assert text.startswith("The age at recruitment is 60 years. The sex is Male.")
    for leak in ("K401", "2013", "I21", "death", "Date"):  # the CABG case: nothing about the outcome
        assert leak not in text


def test_cache_is_reused_and_keyed_by_config(make_config, extract):
    first = prepare(make_config(f"data.path={extract}"))
    mtime = first.table_path.stat().st_mtime_ns
    again = prepare(make_config(f"data.path={extract}"))
    assert again.directory == first.directory and again.table_path.stat().st_mtime_ns == mtime
    other = prepare(make_config(f"data.path={extract}", "text=list"))
    assert other.directory != first.directory


def test_showcase_and_rap_give_identical_tables(make_config, tmp_path):
    showcase = prepare(make_config(f"data.path={write_showcase(tmp_path / 'a.csv', _cohort())}")).table()
    rap = prepare(make_config(f"data.path={write_rap(tmp_path / 'b.csv', _cohort(), replace=True)}")).table()
    assert showcase.equals(rap)


def test_no_cases_is_an_error_and_leaves_nothing(make_config, tmp_path):
    path = write_showcase(tmp_path / "healthy.csv", [base_person(3000000 + i) for i in range(30)])
    cfg = make_config(f"data.path={path}")
    with pytest.raises(CadftError, match="no cases of task hard_cad_incident10"):
        prepare(cfg)
    root = Path(cfg.paths.prepared_dir)
    assert not root.exists() or not any(root.iterdir())


def test_seed_json(make_config, tmp_path):
    records = [{"prompt": f"Patient {i}: age {50 + i}.", "label": "1" if i % 5 == 0 else "0"} for i in range(40)]
    jsonl = tmp_path / "seed.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    table = prepare(make_config("data=seed_json", f"data.path={jsonl}")).table()
    assert table.height == 40 and table["label"].sum() == 8 and table.columns == ["eid", "label", "split", "text"]
    as_list = tmp_path / "seed.json"
    as_list.write_text(json.dumps(records))
    assert prepare(make_config("data=seed_json", f"data.path={as_list}")).table().equals(table)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "x", "label": "yes"}) + "\n")
    with pytest.raises(CadftError, match='record 1: label=\'yes\'; expected "0" or "1"'):
        prepare(make_config("data=seed_json", f"data.path={bad}"))


def test_cli_prints_where_the_table_went_and_fails_cleanly(tmp_path, extract):
    base = [*CADFT, "prepare", f"paths.output_dir={tmp_path / 'out'}", "backbone=tiny"]
    done = subprocess.run(base + [f"data.path={extract}"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "prepared table: " in done.stdout and str(tmp_path / "out" / "prepared") in done.stdout
    failed = subprocess.run(
        base + [f"data.path={tmp_path / 'missing.csv'}"], capture_output=True, text=True, timeout=300
    )
    assert failed.returncode == 2
    assert (
        failed.stderr.strip().splitlines()[-1]
        == f"cadft prepare: error: data.path={tmp_path / 'missing.csv'}: no such file"
    )
    assert "Traceback" not in failed.stderr


@pytest.mark.parametrize(
    "layout",
    [
        ["--format", "rap"],
        ["--format", "rap", "--coding", "replace"],
        ["--format", "rap", "--coding", "replace", "--multi-cell", "pipe"],
        ["--format", "tab"],
        ["--format", "parquet", "--parquet-naming", "rap", "--coding", "replace"],
    ],
    ids=["rap_raw", "rap_replace", "rap_replace_pipe", "tab", "parquet_rap_replace"],
)
def test_synthetic_cohort_prepares_identically_in_every_layout(make_config, synthetic_cohort, tmp_path, layout):
    """cadft synth writes one cohort in several layouts; labels, texts, features and splits must not change."""
    from cadft.cli.synth import main as synth

    extract, _ = synthetic_cohort
    suffix = {"tab": ".tab", "parquet": ".parquet"}.get(layout[1], ".csv")
    other = tmp_path / f"cohort{suffix}"
    assert synth(["--n", "3000", "--seed", "0", "--out", str(other), *layout]) == 0
    reference = prepare(make_config(f"data.path={extract}", "text.history=on")).table()
    assert prepare(make_config(f"data.path={other}", "text.history=on")).table().equals(reference)  # the history too
    assert 0.02 < reference["label"].mean() < 0.07


def test_history_holds_only_what_came_before_the_assessment(make_config, synthetic_cohort, prepared_dir):
    """text.history=on on the synthetic cohort, checked against the extract itself; cadft predict writes the same
    texts."""
    from cadft.data.history import HISTORY_COLUMN
    from cadft.data.records import records_from_extract
    from cadft.data.ukb.read import read_extract

    extract, _ = synthetic_cohort
    cfg = make_config(f"data.path={extract}", f"paths.prepared_dir={prepared_dir}", "text.history=on")
    prepared = prepare(cfg)
    table = prepared.table()
    raw = read_extract(extract, [53, 41270, 41280])
    dated = (
        raw.entries.filter(pl.col("field") == 41270)
        .select("eid", "array", "code")
        .join(raw.entries.filter(pl.col("field") == 41280).select("eid", "array", "date"), on=["eid", "array"])
        .join(raw.scalars.select("eid", pl.col("f53").alias("baseline")), on="eid")
    )
    written = (
        table.select("eid", HISTORY_COLUMN)
        .explode(HISTORY_COLUMN)
        .rename({HISTORY_COLUMN: "key"})
        .filter(pl.col("key").str.starts_with("41270:"))
    )
    written = written.with_columns(pl.col("key").str.strip_prefix("41270:").alias("code")).join(
        dated, on=["eid", "code"]
    )
    assert written.height > 300 and (written["date"] <= written["baseline"]).all()
    assert not written["code"].str.contains("^(I21|I22|I23|I24|I252|Z951)").any()  # hard CAD codes: the outcome
    later = dated.filter(pl.col("date") > pl.col("baseline")).join(table.select("eid"), on="eid")
    assert later.height > 300  # the extract has later records, and none of them was written
    assert prepared.card["history"]["participants_with_history"] > 0.5 * table.height
    assert table["text"].str.contains("The list of hospital diagnoses before the assessment is ").sum() > 300
    records = records_from_extract(cfg.data, cfg.text, cfg.task).join(
        table.select("eid", pl.col("text").alias("prepared")), on="eid"
    )
    assert records.height == table.height and (records["text"] == records["prepared"]).all()


@pytest.mark.parametrize("damage", ["flip_bytes", "truncate", "drop_manifest"])
def test_damaged_cache_entry_is_rebuilt(make_config, extract, caplog, damage):
    cfg = make_config(f"data.path={extract}")
    first = prepare(cfg)
    expected = first.table()
    manifest = json.loads(first.manifest_path.read_text())
    assert manifest["files"]["data.parquet"]["bytes"] == first.table_path.stat().st_size
    raw = bytearray(first.table_path.read_bytes())
    if damage == "flip_bytes":
        middle = len(raw) // 2
        raw[middle : middle + 64] = bytes(64)
        first.table_path.write_bytes(bytes(raw))
    elif damage == "truncate":
        first.table_path.write_bytes(bytes(raw[: len(raw) // 3]))
    else:
        first.manifest_path.unlink()
    with caplog.at_level(logging.WARNING, logger="cadft.data.prepare"):
        again = prepare(cfg)
    assert again.directory == first.directory and again.damage() is None
    assert again.table().equals(expected)
    assert f"prepared data in {first.directory} is damaged" in caplog.text
    assert sorted(p.name for p in again.directory.parent.iterdir()) == [  # no staging or damaged leftovers
        ".extract_digests",  # the extract's SHA-256 for the cache key (cadft.data.fingerprint)
        first.directory.name,
    ]


def test_unwritable_prepared_dir_fails_before_the_extract_is_read(make_config, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")  # a folder below a regular file cannot be created, even by root (chmod would not stop root)
    bad_extract = tmp_path / "not_an_extract.csv"
    bad_extract.write_text("id,age\n1,50\n")  # reading it would fail with another message
    with pytest.raises(CadftError) as err:
        prepare(make_config(f"data.path={bad_extract}", f"paths.prepared_dir={blocker}/prepared"))
    assert (
        str(err.value)
        == f"prepared data folder (paths.prepared_dir) {blocker}/prepared is not writable (Not a directory)"
    )


def test_card_counts_special_answers(make_config, tmp_path):
    cohort = _cohort()
    cohort[-1][20161] = -3
    cohort[-2][20161] = -3
    cohort[-3][21001] = -1
    prepared = prepare(make_config(f"data.path={write_showcase(tmp_path / 'x.csv', cohort)}"))
    assert prepared.card["special_answers"] == {"bmi": {"Do not know": 1}, "pack_years": {"Prefer not to answer": 2}}
    table = prepared.table()  # special answers are kept to write records in other orders, never as features
    assert table.filter(pl.col("pack_years:special").is_not_null()).height == 2
    assert not [c for c in feature_columns(table) if c.endswith(":special")]


def test_withdrawals_and_negative_eids_are_removed_first_and_counted(make_config, tmp_path):
    cohort = _cohort() + [base_person(-1000001), base_person(-2000002, sex=0)]
    cases = [eid for eid, label in _labels(cohort).items() if label == 1]
    withdrawn = [cases[0], 2000003, 2000004]
    path = write_showcase(tmp_path / "cohort.csv", cohort)
    withdrawals = tmp_path / "w20240101.csv"
    withdrawals.write_text("\n".join(map(str, [*withdrawn, 5999999])) + "\n")  # 5999999: listed, not in this extract
    plain = prepare(make_config(f"data.path={path}"))
    prepared = prepare(make_config(f"data.path={path}", f"data.withdrawals={withdrawals}"))
    assert prepared.directory != plain.directory
    eids = set(prepared.table()["eid"])
    assert not eids & set(withdrawn) and min(eids) > 0
    assert set(plain.table()["eid"]) - eids == set(withdrawn)  # exactly the listed participants
    assert min(plain.table()["eid"]) > 0  # negative eids are dropped without a withdrawals file too
    card = prepared.card
    assert (card["input"]["rows"], card["input"]["withdrawn"], card["input"]["negative_eids"]) == (len(cohort), 3, 2)
    assert plain.card["input"]["withdrawn"] == 0 and plain.card["input"]["negative_eids"] == 2
    assert card["cases"] == plain.card["cases"] - 1
    for file in prepared.directory.iterdir():  # nothing about them in any prepared file
        content = file.read_bytes()
        assert not any(str(eid).encode() in content for eid in [*withdrawn, -1000001, -2000002]), file.name
    withdrawals.write_text(f"{withdrawn[1]}\n")  # the same file, new content: another cache entry
    again = prepare(make_config(f"data.path={path}", f"data.withdrawals={withdrawals}"))
    assert again.directory != prepared.directory and set(plain.table()["eid"]) - set(again.table()["eid"]) == {
        withdrawn[1]
    }


def test_every_participant_withdrawn_is_said_as_such(make_config, tmp_path):
    cohort = _cohort(n_controls=5)
    path = write_showcase(tmp_path / "cohort.csv", cohort)
    withdrawals = tmp_path / "withdrawn.txt"
    withdrawals.write_text("\n".join(str(p["eid"]) for p in cohort) + "\n")
    message = rf"{path}: every participant was withdrawn \({len(cohort)} listed in the withdrawals file, 0 with a"
    with pytest.raises(CadftError, match=message):  # not "no cases ... check task.definition"
        prepare(make_config(f"data.path={path}", f"data.withdrawals={withdrawals}"))
    from cadft.data.records import records_from_extract  # cadft predict's records: the same line

    config = make_config(f"data.path={path}")
    with pytest.raises(CadftError, match=message):
        records_from_extract(config.data, config.text, config.task, withdrawals)


def test_the_cache_follows_the_extracts_content_not_where_it_is(make_config, extract, tmp_path, monkeypatch):
    """The same extract from another folder and another output folder (whose default oracle path differs) is
    prepared once; the same path with other bytes (same size, an edit in the middle) is prepared again."""
    shared = tmp_path / "shared-prepared"
    first = prepare(make_config(f"data.path={extract}", f"paths.prepared_dir={shared}"))
    copy = tmp_path / "elsewhere" / "copy.csv"
    copy.parent.mkdir()
    copy.write_bytes(extract.read_bytes())  # a plain copy: a new modification time
    other_folder = make_config(
        f"data.path={copy}", f"paths.prepared_dir={shared}", f"paths.output_dir={tmp_path / 'another-workdir'}"
    )
    assert other_folder.data.oracle_path != make_config().data.oracle_path
    mtime = first.table_path.stat().st_mtime_ns
    again = prepare(other_folder)
    assert again.directory == first.directory and again.table_path.stat().st_mtime_ns == mtime  # not rebuilt
    monkeypatch.setattr("cadft.data.fingerprint.file_digest", lambda path: pytest.fail(f"{path} hashed again"))
    assert prepare(other_folder).key == first.key  # the digest is remembered beside the cache
    monkeypatch.undo()
    raw = bytearray(copy.read_bytes())
    middle = raw.index(b'"60"', len(raw) // 2)  # an age in the middle of the file, the size unchanged
    raw[middle : middle + 4] = b'"61"'
    copy.write_bytes(bytes(raw))
    assert prepare(other_folder).key != first.key


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_a_compressed_extract_is_read_or_refused_by_name(make_config, extract, tmp_path, compression):
    import gzip

    packed = tmp_path / "cohort.csv.gz"
    if compression == "gzip":
        packed.write_bytes(gzip.compress(extract.read_bytes()))
        plain = prepare(make_config(f"data.path={extract}")).table()
        assert prepare(make_config(f"data.path={packed}")).table().equals(plain)
        cut = tmp_path / "cut.csv.gz"
        cut.write_bytes(packed.read_bytes()[: packed.stat().st_size // 2])
        with pytest.raises(CadftError, match=rf"{cut}: the compressed file is cut off or damaged"):
            prepare(make_config(f"data.path={cut}"))
    else:
        packed = tmp_path / "cohort.csv.zst"
        packed.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(64))  # zstd's signature, which polars' CSV reader lacks
        with pytest.raises(CadftError, match=rf"{packed}: a zstd-compressed file; cadft reads CSV/TSV \(plain or gzip"):
            prepare(make_config(f"data.path={packed}"))


def _labels(cohort: list[dict]) -> dict[int, int]:
    return {case[0]["eid"]: case[1] for case in EDGE_CASES.values()} | {
        p["eid"]: 0 for p in cohort if p["eid"] >= 2000000
    }


WALES, SCOTLAND = (11003, 11022, 11023), (11004, 11005)


def _with_centres(cohort: list[dict]) -> list[dict]:
    centres = [*WALES, *SCOTLAND, 11009, 11010, 11021]
    return [person | {54: centres[i % len(centres)]} for i, person in enumerate(cohort)]


def test_split_by_country_puts_exactly_the_welsh_centres_in_test(make_config, tmp_path):
    cohort = _with_centres(_cohort(200))
    centre = {p["eid"]: p[54] for p in cohort}
    path = write_showcase(tmp_path / "cohort.csv", cohort)
    # Wales' hospital data end earliest: censoring=control keeps its late recruits, so the test is about the split
    # alone.
    prepared = prepare(
        make_config(
            f"data.path={path}", "data.split.by=country", "data.split.test_groups=[Wales]", "task.censoring=control"
        )
    )
    table = prepared.table()
    test = set(table.filter(pl.col("split") == "test")["eid"])
    assert test == {eid for eid in table["eid"] if centre[eid] in WALES} and len(test) > 50
    assert set(table.filter(pl.col("split") != "test")["split"]) == {"train", "validation"}
    card = prepared.card["split"]
    assert card["by"] == "country" and card["test_groups"] == ["Wales"] and card["no_country"] == 0
    assert card["participants_by_group"]["Wales"] == len(test) and set(card["participants_by_group"]) == {
        "England",
        "Scotland",
        "Wales",
    }
    by_centre = prepare(
        make_config(
            f"data.path={path}",
            "data.split.by=centre",
            "data.split.test_groups=[Cardiff,11005]",
            "task.censoring=control",
        )
    ).table()
    assert set(by_centre.filter(pl.col("split") == "test")["eid"]) == {
        eid for eid in by_centre["eid"] if centre[eid] in (11003, 11005)
    }
