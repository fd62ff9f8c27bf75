"""The extract reader: every layout gives the same values; bad files give one clear error."""

from __future__ import annotations

import csv
import io
import tracemalloc

import polars as pl
import pytest

from cadft.data.ukb.columns import detect_naming, parse_column
from cadft.data.ukb.read import ExtractError, read_extract
from cadft.data.ukb.rows import first_ragged_row
from tests.edge_cases import people
from tests.extracts import base_person, write_parquet, write_rap, write_showcase

FIELDS = [31, 53, 21022, 30690, 20116, 4080, 6177, 6153, 20002, 41270, 41280, 41271, 41281, 41272, 41282, 40000, 40001]


def _read(path, **kwargs):
    extract = read_extract(path, FIELDS, optional_ids=(191,), **kwargs)
    return extract.scalars.sort("eid"), extract.entries.sort("eid", "field", "array")


LAYOUTS = {
    "showcase": lambda p, ppl: write_showcase(p / "x.csv", ppl),
    "tab": lambda p, ppl: write_showcase(p / "x.tab", ppl, tab=True),
    "rap_raw_json": lambda p, ppl: write_rap(p / "x.csv", ppl),
    "rap_raw_pipe": lambda p, ppl: write_rap(p / "x.csv", ppl, cell="pipe"),
    "rap_replace_json": lambda p, ppl: write_rap(p / "x.csv", ppl, replace=True),
    "rap_replace_pipe_prefixed": lambda p, ppl: write_rap(p / "x.csv", ppl, replace=True, cell="pipe", prefix=True),
    "parquet_showcase": lambda p, ppl: write_parquet(p / "x.parquet", ppl),
    "parquet_rap": lambda p, ppl: write_parquet(p / "x.parquet", ppl, naming="rap"),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_layout_reads_the_same(tmp_path, layout):
    reference = _read(write_showcase(tmp_path / "ref.csv", people()))
    (tmp_path / layout).mkdir()
    got = _read(LAYOUTS[layout](tmp_path / layout, people()))
    assert got[0].equals(reference[0]), got[0]
    assert got[1].equals(reference[1]), got[1]


def test_values_are_typed_and_paired(tmp_path):
    scalars, entries = _read(write_showcase(tmp_path / "x.csv", people()))
    row = scalars.filter(eid=1000018).row(0, named=True)
    assert row["f31"] == 1 and row["f21022"] == 60.0 and str(row["f53"]) == "2008-06-15" and row["f30690"] == 5.6
    mi = entries.filter((pl.col("eid") == 1000018) & (pl.col("field") == 41270) & (pl.col("array") == 3))
    date = entries.filter((pl.col("eid") == 1000018) & (pl.col("field") == 41280) & (pl.col("array") == 3))
    assert mi["code"].item() == "I211" and str(date["date"].item()) == "2016-09-09"
    assert entries.filter((pl.col("eid") == 1000018) & (pl.col("field") == 4080))["value"].to_list() == [141.0, 137.0]
    assert entries.filter((pl.col("eid") == 1000004) & (pl.col("field") == 20002))["num"].to_list() == [1065, 1075]


def test_only_instance_zero_is_read(tmp_path):
    path = write_showcase(tmp_path / "x.csv", people()[:2])
    text = path.read_text().splitlines()
    text[0] += ',"30690-1.0"'
    text[1:] = [line + ',"9.9"' for line in text[1:]]
    path.write_text("\n".join(text) + "\n")
    scalars, _ = _read(path)
    assert 9.9 not in scalars["f30690"].to_list()


def test_column_names():
    assert parse_column("41270-0.258", "showcase").array == 258
    assert parse_column("f.21003.0.0", "tab").field == 21003
    key = parse_column("participant.p4080_i0_a1", "rap")
    assert (key.field, key.instance, key.array) == (4080, 0, 1)
    assert parse_column("p41270", "rap").instance is None
    assert detect_naming(["eid", "p31", "p53_i0"]) == "rap" and detect_naming(["eid", "31-0.0"]) == "showcase"
    assert detect_naming(["id", "age"]) is None


def _message(path, **kwargs) -> str:
    with pytest.raises(ExtractError) as err:
        read_extract(path, FIELDS, optional_ids=(191,), **kwargs)
    return str(err.value)


def test_missing_columns_are_listed(tmp_path):
    path = write_showcase(tmp_path / "x.csv", people())
    frame = pl.read_csv(path, infer_schema=False).drop("30690-0.0", "53-0.0")
    frame.write_csv(path, quote_style="always")
    message = _message(path)
    assert (
        "30690 (Cholesterol), e.g. column 30690-0.0" in message
        and "53 (Date of attending assessment centre)" in message
    )
    assert "accepted formats" in message


def test_duplicate_eids(tmp_path):
    path = write_showcase(tmp_path / "x.csv", [base_person(1000001), base_person(1000002), base_person(1000001)])
    message = _message(path)
    assert "2 rows share an eid" in message and "file lines [2, 4]" in message and "1000001" not in message


def test_unparseable_values_counted_then_fatal(tmp_path):
    persons = [base_person(1000000 + i) for i in range(200)]
    persons[3][30690] = "5,6"  # decimal comma
    persons[4][53] = "15/06/2008"
    path = write_showcase(tmp_path / "x.csv", persons)
    extract = read_extract(path, FIELDS, optional_ids=(191,), max_bad_fraction=0.01)
    assert extract.bad_values == {"30690-0.0": 1, "53-0.0": 1}
    assert extract.scalars.filter(eid=1000003)["f30690"].item() is None
    message = _message(path, max_bad_fraction=0.001)
    assert (
        "30690-0.0: 1 of 200 (0.5%)" in message and "53-0.0: 1 of 200" in message and "data.max_bad_fraction" in message
    )


def test_unknown_format(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("id,age\n1,50\n")
    assert "cannot tell the format from the header (first columns: id, age)" in _message(path)
    assert "data.format='xlsx' is not an extract format" in _message(
        write_showcase(tmp_path / "y.csv", people()), fmt="xlsx"
    )
    assert "data.format=rap but the header looks like showcase" in _message(
        write_showcase(tmp_path / "z.csv", people()), fmt="rap"
    )


def test_empty_file_and_header_only(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert "the file is empty" in _message(empty)
    path = write_showcase(tmp_path / "x.csv", people()[:1])
    path.write_text(path.read_text().splitlines()[0] + "\n")
    assert "no participants" in _message(path)


def test_non_utf8(tmp_path):
    path = write_showcase(tmp_path / "x.csv", people()[:3])
    raw = path.read_bytes().replace(b'"5.6"', b'"5\xff6"', 1)
    path.write_bytes(raw)
    offset = raw.index(b"\xff")
    assert f"not valid UTF-8 at byte {offset}" in _message(path)
    extract = read_extract(path, FIELDS, optional_ids=(191,), encoding="utf8-lossy", max_bad_fraction=1.0)
    assert extract.bad_values == {"30690-0.0": 1}


CUT_LAYOUTS = {
    "showcase": lambda p: write_showcase(p / "x.csv", people()),
    "tab": lambda p: write_showcase(p / "x.tab", people(), tab=True),
    "rap": lambda p: write_rap(p / "x.csv", people(), replace=True),
}


@pytest.mark.parametrize("layout", list(CUT_LAYOUTS))
def test_file_cut_off_mid_row(tmp_path, layout):
    path = CUT_LAYOUTS[layout](tmp_path)
    raw = path.read_bytes()
    lines = raw.splitlines(keepends=True)
    path.write_bytes(raw[: len(raw) - len(lines[-1]) // 2])  # an interrupted copy: half of the last row
    header = len(next(csv.reader(io.StringIO(lines[0].decode()), delimiter="\t" if layout == "tab" else ",")))
    message = _message(path)
    assert message.startswith(f"{path}: line {len(lines)}")
    assert f" fields, expected {header} as in the header" in message or f" of the header's {header} fields" in message
    assert "the file is cut off mid-row (an interrupted download or copy?)" in message


@pytest.mark.parametrize("layout", list(CUT_LAYOUTS))
def test_row_with_more_or_fewer_fields(tmp_path, layout):
    path = CUT_LAYOUTS[layout](tmp_path)
    separator = "\t" if layout == "tab" else ","
    lines = path.read_text().splitlines()
    header = len(next(csv.reader(io.StringIO(lines[0]), delimiter=separator)))
    long = lines.copy()
    long[3] += f"{separator}5.6"
    path.write_text("\n".join(long) + "\n")
    assert _message(path) == (
        f"{path}: line 4 has {header + 1} fields, expected {header} as in the header; every row needs one value per "
        "header column (a separator inside an unquoted value?)"
    )
    short = lines.copy()
    short[2] = short[2].rsplit(separator, 2)[0]
    path.write_text("\n".join(short) + "\n")
    assert _message(path).startswith(
        f"{path}: line 3 has {header - 2} fields, expected {header} as in the header; every row"
    )


def test_blank_line(tmp_path):
    path = write_showcase(tmp_path / "x.csv", people()[:3])
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines[:2], "", *lines[2:]]) + "\n")
    assert _message(path).startswith(f"{path}: line 3 is blank (1 field, expected ")


def test_duplicated_column(tmp_path):
    path = write_showcase(tmp_path / "x.csv", people()[:3])
    text = path.read_text()
    path.write_text(text.replace('"21001-0.0"', '"48-0.0"', 1))
    header = next(csv.reader(io.StringIO(path.read_text())))
    positions = [i + 1 for i, name in enumerate(header) if name == "48-0.0"]
    assert (
        _message(path)
        == f"{path}: column '48-0.0' appears 2 times in the header (columns {positions}); each column name must be "
        "unique"
    )
    rap = write_rap(tmp_path / "rap.csv", people()[:3])
    frame = pl.read_csv(rap, infer_schema=False)
    frame.with_columns(pl.col("p31").alias("participant.p31")).write_csv(rap)
    assert (
        _message(rap)
        == f"{rap}: columns 'p31' and 'participant.p31' both hold field 31 (instance None, array None); keep one of "
        "them"
    )


def test_row_check_follows_csv_quoting(tmp_path):
    """Quoted separators, quoted newlines (counted as editor lines) and escaped quotes are values, not structure."""
    path = tmp_path / "x.csv"
    path.write_bytes(b'eid,a,b\r\n1,"x, y","a ""q"" b"\r\n2,"two\nlines",3\r\n3,"[""I251"",""E119""]",\r\n4,5\r\n')
    ragged = first_ragged_row(path, ",")
    assert (ragged.line, ragged.found, ragged.expected, ragged.at_end) == (6, 2, 3, True)
    path.write_bytes(b'"eid","a","b"\n"1","2","3"\n"2","still open\n')
    ragged = first_ragged_row(path, ",")
    assert (ragged.line, ragged.found, ragged.open_quote) == (3, 2, True)


def test_row_check_streams(tmp_path):
    """Memory stays at about one row however long the file (a real extract: 500k rows, tens of GB)."""
    row = ",".join(f'"{i}.5"' for i in range(1000)) + "\n"
    path = tmp_path / "wide.csv"
    with path.open("w") as fh:
        fh.writelines([row] * 3000)  # 16 MB
    tracemalloc.start()
    assert first_ragged_row(path, ",") is None
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 200_000, peak


def test_nan_is_missing_and_inf_is_unparseable(tmp_path):
    persons = [base_person(1000000 + i) for i in range(10)]
    persons[1][30690] = "nan"  # pandas' to_csv of a float column with a missing value
    persons[2][30690] = "NaN"
    persons[3][30690] = "inf"
    persons[4][4080] = ["NaN", 140]
    extract = read_extract(
        write_showcase(tmp_path / "x.csv", persons), FIELDS, optional_ids=(191,), max_bad_fraction=0.5
    )
    values = extract.scalars.sort("eid")["f30690"].to_list()
    assert values[1] is None and values[2] is None and values[3] is None and values[0] == 5.6
    assert extract.bad_values == {"30690-0.0": 1}  # inf only: NaN is how pandas writes missing
    readings = extract.entries.filter((pl.col("eid") == 1000004) & (pl.col("field") == 4080))
    assert readings.select("array", "value").rows() == [(1, 140.0)]
    frame = pl.read_csv(tmp_path / "x.csv", infer_schema=False).with_columns(
        pl.col("30690-0.0").cast(pl.Float64, strict=False)
    )
    frame.write_parquet(tmp_path / "x.parquet")  # a float column holding NaN, as pandas writes Parquet
    parquet = read_extract(tmp_path / "x.parquet", FIELDS, optional_ids=(191,), max_bad_fraction=0.5)
    assert parquet.scalars.sort("eid")["f30690"].to_list() == values
