"""Bad input through the real `cadft prepare` command line: every refused file is one `cadft prepare: error:` line
naming the file and the line or column, exit status 2, no traceback and nothing left behind; the handled cases
(NaN values, special answers, a damaged cache entry) succeed with the right output."""

from __future__ import annotations

import csv
import io
import re
import subprocess
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import CADFT
from tests.edge_cases import people
from tests.extracts import base_person, write_rap, write_showcase

CLI = [*CADFT, "prepare"]


def _cohort() -> list[dict]:
    return people() + [base_person(2000000 + i, sex=i % 2, age=40 + i % 30) for i in range(40)]


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [a for a in args if a.startswith("-")]  # Hydra's flags (-m) before the overrides
    overrides = [a for a in args if not a.startswith("-")]
    command = [*CLI, *flags, "backbone=tiny", f"paths.output_dir={tmp_path / 'out'}", *overrides]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def _header_width(path: Path, separator: str) -> int:
    return len(next(csv.reader(io.StringIO(path.read_text().splitlines()[0]), delimiter=separator)))


def _cut_off(path: Path, after: bytes | None = None) -> tuple[Path, int]:
    """The file cut in its last row, as by an interrupted download: in the middle of the row, or just after
    `after` there; returns the file and that row's line."""
    raw = path.read_bytes()
    lines = raw.splitlines(keepends=True)
    start = len(raw) - len(lines[-1])
    cut = start + lines[-1].index(after) + len(after) if after else start + len(lines[-1]) // 2
    path.write_bytes(raw[:cut])
    return path, len(lines)


def truncated_showcase(tmp_path: Path) -> tuple[list[str], str]:
    path, line = _cut_off(write_showcase(tmp_path / "cohort.csv", _cohort()), after=b'"2008-0')  # inside a quoted date
    width = _header_width(path, ",")
    return [f"data.path={path}"], (
        rf"{re.escape(str(path))}: line {line}: a quoted value opened here is never closed "
        rf"\(\d+ of the header's {width} fields so far\): the file is cut off mid-row "
        r"\(an interrupted download or copy\?\); export or copy it again, or remove the stray quote"
    )


def truncated_tab(tmp_path: Path) -> tuple[list[str], str]:
    path, line = _cut_off(write_showcase(tmp_path / "cohort.tab", _cohort(), tab=True))
    width = _header_width(path, "\t")
    return [f"data.path={path}"], (
        rf"{re.escape(str(path))}: line {line} \(the last\) has \d+ fields, expected {width} as in the header: "
        r"the file is cut off mid-row \(an interrupted download or copy\?\); export or copy it again"
    )


def truncated_rap(tmp_path: Path) -> tuple[list[str], str]:
    path, line = _cut_off(
        write_rap(tmp_path / "cohort.csv", _cohort(), replace=True), after=b",2008-0"
    )  # an unquoted date
    width = _header_width(path, ",")
    return [f"data.path={path}"], (
        rf"{re.escape(str(path))}: line {line} \(the last\) has \d+ fields, expected {width} as in the header: "
        r"the file is cut off mid-row \(an interrupted download or copy\?\); export or copy it again"
    )


def long_row(tmp_path: Path) -> tuple[list[str], str]:
    path = write_showcase(tmp_path / "cohort.csv", _cohort())
    lines = path.read_text().splitlines()
    lines[4] += ',"1"'
    path.write_text("\n".join(lines) + "\n")
    width = _header_width(path, ",")
    return [f"data.path={path}"], (
        rf"{re.escape(str(path))}: line 5 has {width + 1} fields, expected {width} as in the header; "
        r"every row needs one value per header column \(a separator inside an unquoted value\?\)"
    )


def duplicated_column(tmp_path: Path) -> tuple[list[str], str]:
    path = write_showcase(tmp_path / "cohort.csv", _cohort())
    path.write_text(path.read_text().replace('"21001-0.0"', '"48-0.0"', 1))
    return (
        [f"data.path={path}"],
        rf"{re.escape(str(path))}: column '48-0.0' appears 2 times in the header \(columns \[\d+, \d+\]\); each column "
        r"name must be unique",
    )


def output_dir_unwritable(tmp_path: Path) -> tuple[list[str], str]:
    # Tests run as root, where chmod does not stop a write: a folder below a regular file cannot be made by anyone.
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    path = write_showcase(tmp_path / "cohort.csv", _cohort())
    return [
        f"data.path={path}",
        f"paths.output_dir={blocker}/out",
    ], rf"paths.output_dir {re.escape(str(blocker))}/out is not writable \(Not a directory\)"


def sweep_output_dir_unwritable(tmp_path: Path) -> tuple[list[str], str]:
    """A sweep (-m) checks before Hydra makes its sweep dir, as cadft train -m does (the same callback)."""
    overrides, message = output_dir_unwritable(tmp_path)
    return ["-m", *overrides, "seed=1,2"], message


def prepared_dir_unwritable(tmp_path: Path) -> tuple[list[str], str]:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    path = write_showcase(tmp_path / "cohort.csv", _cohort())
    return [f"data.path={path}", f"paths.prepared_dir={blocker}/prepared"], (
        rf"prepared data folder \(paths.prepared_dir\) {re.escape(str(blocker))}/prepared is not writable "
        r"\(Not a directory\)"
    )


def withdrawals_missing(tmp_path: Path) -> tuple[list[str], str]:
    path = write_showcase(tmp_path / "cohort.csv", _cohort())
    return [
        f"data.path={path}",
        f"data.withdrawals={tmp_path / 'w.csv'}",
    ], rf"data.withdrawals={re.escape(str(tmp_path / 'w.csv'))}: no such file"


def withdrawals_not_an_eid(tmp_path: Path) -> tuple[list[str], str]:
    path = write_showcase(tmp_path / "cohort.csv", _cohort())
    withdrawals = tmp_path / "w.csv"
    withdrawals.write_text("1000001\n\n1000002 x\n")
    return [f"data.path={path}", f"data.withdrawals={withdrawals}"], (
        rf"data.withdrawals={re.escape(str(withdrawals))}: line 3: '1000002 x' is not an eid; the file has one integer "
        r"eid a line"
    )


def absent_test_group(tmp_path: Path) -> tuple[list[str], str]:
    people = _cohort()
    for person in people:
        person[54] = 11009
    path = write_showcase(tmp_path / "cohort.csv", people)
    return [f"data.path={path}", "data.split.by=country", "data.split.test_groups=[Wales]"], (
        r"data.split.test_groups: \['Wales'\] have no participants in the cohort; countries present: England \(\d+\)"
    )


REFUSED = [
    withdrawals_missing,
    withdrawals_not_an_eid,
    absent_test_group,
    truncated_showcase,
    truncated_tab,
    truncated_rap,
    long_row,
    duplicated_column,
    output_dir_unwritable,
    sweep_output_dir_unwritable,
    prepared_dir_unwritable,
]


@pytest.mark.parametrize("case", REFUSED, ids=[case.__name__ for case in REFUSED])
def test_refused_with_one_line_and_nothing_left(tmp_path, case):
    overrides, message = case(tmp_path)
    done = _run(tmp_path, *overrides)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert re.fullmatch(f"cadft prepare: error: {message}", lines[0]), lines[0]
    assert (
        not list(tmp_path.rglob("prepared"))
        and not list(tmp_path.rglob(".staging-*"))
        and not list(tmp_path.rglob("*.parquet"))
    )


def _prepared_table(done: subprocess.CompletedProcess) -> Path:
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return Path(re.search(r"prepared table: (\S+)", done.stdout).group(1))


def test_nan_and_special_answers_are_stated_never_numbers(tmp_path):
    cohort = _cohort()
    person = cohort[-1]
    person |= {30690: "nan", 30760: "NaN", 21001: -3, 20161: -1, 4080: [-3, -3]}
    path = write_showcase(tmp_path / "cohort.csv", cohort)
    done = _run(tmp_path, f"data.path={path}", "text.missing=state", "text.special=state")
    table = pl.read_parquet(_prepared_table(done))
    text = table.filter(eid=person["eid"])["text"].item()
    for sentence in (
        "The body mass index (BMI) is Prefer not to answer.",
        "The pack years of smoking is Do not know.",
        "The systolic blood pressure is Prefer not to answer.",
        "The cholesterol is not recorded.",
        "The HDL cholesterol is not recorded.",
    ):
        assert sentence in text
    for record in table["text"]:
        assert not re.search(r"nan|NaN|inf|-[13](?![\d.])", record), record
    assert table.filter(eid=person["eid"]).select("bmi", "pack_years", "cholesterol", "systolic_bp").row(0) == (
        None,
        None,
        None,
        None,
    )


def test_damaged_cache_entry_is_rebuilt(tmp_path):
    path = write_showcase(tmp_path / "cohort.csv", _cohort())
    table_path = _prepared_table(_run(tmp_path, f"data.path={path}"))
    expected = pl.read_parquet(table_path)
    raw = bytearray(table_path.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 64] = b"\xff" * 64
    table_path.write_bytes(bytes(raw))
    done = _run(tmp_path, f"data.path={path}")
    assert _prepared_table(done) == table_path
    assert (
        f"prepared data in {table_path.parent} is damaged (data.parquet does not match its size and SHA-256 in "
        "manifest.json)" in done.stdout
    )
    assert pl.read_parquet(table_path).equals(expected)
    assert sorted(p.name for p in table_path.parent.parent.iterdir()) == [  # no staging or replaced folder left
        ".extract_digests",  # the extract's SHA-256 for the cache key (cadft.data.fingerprint)
        table_path.parent.name,
    ]
