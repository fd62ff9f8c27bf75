"""Read the fields a task needs from a UK Biobank extract, selecting columns before parsing.

A real extract has ~502k rows and up to tens of thousands of columns, so only the columns of the
requested fields are parsed (polars scans the file; nothing else is materialised). Values come back
as two tables:

- `scalars`: one row per participant, `eid` plus one typed column `f<field>` per single-valued field
  (instance 0): Float64 for numbers, Int64 codes for categorical fields, Date, or normalised code strings.
- `entries`: one row per non-missing element of an array or multi-select field (instance 0):
  `eid, field, array` and the parsed value in the column for its type: `code` (ICD/OPCS string),
  `num` (categorical code), `value` (number) or `date`. `array` is the slot, so the k-th ICD-10 code (41270) pairs
  with the k-th date (41280) in every format.

RAP multi-select cells (`["I251","E119"]` or `I251|E119`) become entries with their position as the
slot; REPLACE labels (`Female`, `I25.2 Old myocardial infarction`) are mapped back to codes.

A text file must be whole: every row has the header's field count (cadft/data/ukb/rows.py, checked alongside the
parse, since polars would fill a short row with nulls) and no column name repeats. A blank or NaN cell is
missing; `inf` in a number field is an unparseable value.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from cadft.data.ukb.columns import ColumnKey, detect_naming, eid_column, parse_column
from cadft.data.ukb.compressed import GZIP, compression_of, open_bytes
from cadft.data.ukb.registry import Field, get_field
from cadft.data.ukb.rows import RaggedRow, first_ragged_row
from cadft.errors import CadftError

EXTRACT_FORMATS = ("auto", "showcase", "tab", "rap", "parquet")
FORMAT_HELP = (
    "accepted formats: Showcase/ukbconv CSV (eid, 31-0.0, 41270-0.12), ukbconv R .tab (f.eid, f.31.0.0), "
    "RAP Table Exporter CSV (eid or participant.eid, p31, p21003_i0, p41280_a12), or Parquet with either naming"
)
_NUMERIC = ("continuous", "integer")


class ExtractError(CadftError):
    """Bad input: the message names the file, the column and the problem."""


@dataclass
class Extract:
    path: Path
    naming: str
    scalars: pl.DataFrame
    entries: pl.DataFrame
    bad_values: dict[str, int] = field(default_factory=dict)  # source column -> unparseable values set missing
    unmapped_labels: dict[str, int] = field(default_factory=dict)  # source column -> labels not in the coding
    absent_optional: list[int] = field(default_factory=list)  # optional fields the file does not carry

    @property
    def n(self) -> int:
        return self.scalars.height


@dataclass(frozen=True)
class _Source:
    """The columns of one file that hold one field at instance 0."""

    field: Field
    columns: tuple[tuple[str, ColumnKey], ...]


def read_extract(
    path: str | Path,
    field_ids: list[int],
    *,
    optional_ids: tuple[int, ...] = (),
    fmt: str = "auto",
    max_bad_fraction: float = 0.01,
    encoding: str = "utf8",
) -> Extract:
    path = Path(path)
    if fmt not in EXTRACT_FORMATS:
        raise ExtractError(f"data.format={fmt!r} is not an extract format; allowed: {', '.join(EXTRACT_FORMATS)}")
    if not path.is_file():
        raise ExtractError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ExtractError(f"{path}: the file is empty; {FORMAT_HELP}")
    compression = compression_of(path)
    if compression not in (None, GZIP):
        raise ExtractError(
            f"{path}: a {compression}-compressed file; cadft reads CSV/TSV (plain or gzip-compressed, .csv.gz) and "
            "Parquet: decompress it first"
        )
    is_parquet = fmt == "parquet" or (fmt == "auto" and _looks_like_parquet(path))
    scan, header, separator = _scan_parquet(path) if is_parquet else _scan_text(path, encoding)
    _check_unique_columns(path, header)
    naming = _naming(path, header, fmt)
    eid = eid_column(header, naming)
    wanted = [get_field(f) for f in dict.fromkeys([*field_ids, *optional_ids])]
    sources = _locate(path, header, naming, wanted, set(optional_ids) - set(field_ids))
    # The row check reads the file in this thread while polars (which releases the GIL) parses it in its own.
    with ThreadPoolExecutor(max_workers=1) as pool:
        rows = None if is_parquet else pool.submit(first_ragged_row, path, separator)
        try:
            scalars, bad, unmapped = _read_scalars(scan, eid, [s for s in sources if not s.field.is_list])
            entries, bad_e, unmapped_e = _read_entries(scan, eid, [s for s in sources if s.field.is_list])
        except pl.exceptions.ComputeError as err:
            _check_rows(path, rows)  # a file cut off mid-row is the reason polars failed: say that
            raise _decode_error(path, err, encoding) from None
        except (ExtractError, OSError):  # OSError: polars on a cut .csv.gz ("unexpected end of file")
            _check_rows(path, rows)
            raise
        _check_rows(path, rows)
    bad.update(bad_e)
    unmapped.update(unmapped_e)
    if scalars.height == 0:
        raise ExtractError(f"{path}: the header is there but the file has no participants")
    _check_eids(path, scalars)
    _check_bad_fraction(path, scan, bad, max_bad_fraction)
    absent = sorted({f.id for f in wanted} - {s.field.id for s in sources})
    return Extract(path, naming, scalars, entries, bad, unmapped, absent)


def _looks_like_parquet(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == b"PAR1"


def _scan_text(path: Path, encoding: str) -> tuple[pl.LazyFrame, list[str], str]:
    with open_bytes(path) as fh:
        first = fh.readline()
    try:
        line = first.decode(
            "utf-8-sig" if encoding == "utf8" else "utf-8", errors="strict" if encoding == "utf8" else "replace"
        )
    except UnicodeDecodeError as err:
        raise ExtractError(
            f"{path}: the header is not valid UTF-8 (byte {err.start}); is this a UK Biobank extract?"
        ) from None
    if not line.strip():
        raise ExtractError(f"{path}: the first line is empty; {FORMAT_HELP}")
    separator = "\t" if line.count("\t") > line.count(",") else ","
    header = next(csv.reader(io.StringIO(line), delimiter=separator))
    scan = pl.scan_csv(
        path,
        separator=separator,
        infer_schema=False,
        null_values=["", "NA"],
        encoding="utf8-lossy" if encoding == "utf8-lossy" else "utf8",
    )
    return scan, header, separator


def _scan_parquet(path: Path) -> tuple[pl.LazyFrame, list[str], None]:
    try:
        scan = pl.scan_parquet(path)
        return scan, scan.collect_schema().names(), None
    except (pl.exceptions.ComputeError, OSError) as err:
        raise ExtractError(f"{path}: not a readable Parquet file ({err})") from None


def _check_unique_columns(path: Path, header: list[str]) -> None:
    repeated = [name for name, count in Counter(header).items() if count > 1]
    if repeated:
        name = repeated[0]
        positions = [i + 1 for i, column in enumerate(header) if column == name]
        raise ExtractError(
            f"{path}: column {name!r} appears {len(positions)} times in the header (columns {positions}"
            f"{f'; also repeated: {repeated[1:6]}' if len(repeated) > 1 else ''}); each column name must be unique"
        )


def _check_rows(path: Path, rows: Future | None) -> None:
    """Raise when the row check found a record whose field count differs from the header's, or a compressed file
    that ends early."""
    try:
        ragged: RaggedRow | None = rows.result() if rows is not None else None
    except (EOFError, OSError) as err:  # gzip: "Compressed file ended before the end-of-stream marker"
        raise ExtractError(
            f"{path}: the compressed file is cut off or damaged ({err}): copy or download it again"
        ) from None
    if ragged is None:
        return
    where = f"{path}: line {ragged.line}"
    counts = f"{ragged.found} fields, expected {ragged.expected} as in the header"
    cut = "the file is cut off mid-row (an interrupted download or copy?); export or copy it again"
    if ragged.open_quote:
        raise ExtractError(
            f"{where}: a quoted value opened here is never closed ({ragged.found} of the header's "
            f"{ragged.expected} fields so far): {cut}, or remove the stray quote"
        )
    if ragged.blank:
        raise ExtractError(
            f"{where} is blank (1 field, expected {ragged.expected} as in the header); remove blank lines"
        )
    if ragged.at_end and ragged.found < ragged.expected:
        raise ExtractError(f"{where} (the last) has {counts}: {cut}")
    raise ExtractError(
        f"{where} has {counts}; every row needs one value per header column (a separator inside an unquoted value?)"
    )


def _naming(path: Path, header: list[str], fmt: str) -> str:
    naming = detect_naming(header)
    if fmt in ("showcase", "tab", "rap"):
        if naming != fmt:
            raise ExtractError(
                f"{path}: data.format={fmt} but the header looks like {naming or 'no UK Biobank format'} "
                f"(first columns: {', '.join(header[:4])}); {FORMAT_HELP}"
            )
        return fmt
    if naming is None:
        raise ExtractError(
            f"{path}: cannot tell the format from the header (first columns: {', '.join(header[:4])}); "
            f"{FORMAT_HELP}; a seed-project JSON file needs data.format=seed_json"
        )
    return naming


def _locate(path: Path, header: list[str], naming: str, fields: list[Field], optional: set[int]) -> list[_Source]:
    wanted = {f.id: f for f in fields}
    found: dict[int, list[tuple[str, ColumnKey]]] = {fid: [] for fid in wanted}
    seen: dict[ColumnKey, str] = {}
    for name in header:
        key = parse_column(name, naming)
        if key is not None and key.field in wanted and key.instance in (None, 0):
            if key in seen:  # RAP `p31` and `participant.p31`: which one holds the value?
                raise ExtractError(
                    f"{path}: columns {seen[key]!r} and {name!r} both hold field {key.field} "
                    f"(instance {key.instance}, array {key.array}); keep one of them"
                )
            seen[key] = name
            found[key.field].append((name, key))
    missing = [wanted[fid] for fid, cols in found.items() if not cols and fid not in optional]
    if missing:
        listing = "; ".join(f"{f.id} ({f.title}), e.g. column {_example_column(f, naming)}" for f in missing)
        raise ExtractError(
            f"{path}: missing required fields for this task and feature set: {listing}. "
            "Add them to the extract, or remove the features/outcome sources that need them from the config. "
            f"{FORMAT_HELP}"
        )
    return [_Source(wanted[fid], tuple(cols)) for fid, cols in found.items() if cols]


def _example_column(f: Field, naming: str) -> str:
    if naming == "rap":
        inst = "_i0" if f.instanced else ""
        return f"p{f.id}{inst}" + ("" if f.multi or f.arrays == 1 else "_a0")
    return f"{f.id}-0.0" if naming == "showcase" else f"f.{f.id}.0.0"


def _read_scalars(scan: pl.LazyFrame, eid: str, sources: list[_Source]):
    columns = {s.field.id: s.columns[0][0] for s in sources}
    raw = scan.select(
        [pl.col(eid).cast(pl.String).alias("eid")] + [pl.col(c).cast(pl.String) for c in columns.values()]
    ).collect(engine="streaming")
    raw = raw.with_columns(
        pl.when(_missing(pl.col(c))).then(None).otherwise(pl.col(c).str.strip_chars()).alias(c) for c in raw.columns
    )
    eids = raw["eid"].cast(pl.Int64, strict=False)
    if eids.null_count():
        rows = (eids.is_null().arg_true() + 2).head(5).to_list()
        raise ExtractError(f"eid column {eid!r}: {eids.null_count()} rows without an integer eid (file lines {rows})")
    parsed = raw.select(
        [eids.alias("eid")] + [_parse(pl.col(col), get_field(fid)).alias(f"f{fid}") for fid, col in columns.items()]
    )
    bad, unmapped = {}, {}
    for fid, col in columns.items():
        lost = int((raw[col].is_not_null() & parsed[f"f{fid}"].is_null()).sum())
        if lost:
            bad[col] = lost
    return parsed, bad, unmapped


def _read_entries(scan: pl.LazyFrame, eid: str, sources: list[_Source]):
    empty = pl.DataFrame(
        schema={
            "eid": pl.Int64,
            "field": pl.Int32,
            "array": pl.Int32,
            "code": pl.String,
            "num": pl.Int64,
            "value": pl.Float64,
            "date": pl.Date,
        }
    )
    if not sources:
        return empty, {}, {}
    slots = pl.DataFrame(
        [
            {"col": name, "field": s.field.id, "slot": key.array, "cell": key.array is None}
            for s in sources
            for name, key in s.columns
        ],
        schema={"col": pl.String, "field": pl.Int32, "slot": pl.Int32, "cell": pl.Boolean},
    )
    cols = slots["col"].to_list()
    schema = scan.collect_schema()
    long = (
        scan.select([pl.col(eid).cast(pl.Int64, strict=False).alias("eid")] + [_as_text(c, schema[c]) for c in cols])
        .unpivot(index="eid", on=cols, variable_name="col", value_name="raw")
        .filter(~_missing(pl.col("raw")))
        .collect(engine="streaming")
    )
    long = long.join(slots, on="col", how="left")
    single = long.filter(~pl.col("cell")).rename({"slot": "array"})
    cells = (
        long.filter(pl.col("cell"))
        .with_columns(_split_cell(pl.col("raw")).alias("raw"))
        .with_columns(pl.int_ranges(pl.col("raw").list.len()).cast(pl.List(pl.Int32)).alias("array"))
        .explode("raw", "array")
        .filter(pl.col("raw").is_not_null())
    )
    columns = ["eid", "col", "field", "array", "raw"]
    long = (
        pl.concat([single.select(columns), cells.select(columns)])
        .filter(~_missing(pl.col("raw")))
        .with_columns(pl.col("raw").str.strip_chars())
    )
    parts, bad, unmapped = [], {}, {}
    for s in sources:
        part = long.filter(pl.col("field") == s.field.id)
        typed = part.with_columns(_typed_columns(s.field))
        parsed_ok = pl.any_horizontal(pl.col(c).is_not_null() for c in ("code", "num", "value", "date"))
        failed = typed.filter(~parsed_ok)
        if failed.height:
            # A categorical label outside the registry's subset of the coding is a code cadft does not use,
            # not bad data; anything else that does not parse (a date, a number) is bad.
            is_label = (s.field.type == "categorical") & failed["raw"].cast(pl.Float64, strict=False).is_null()
            unmapped.update(failed.filter(is_label).group_by("col").len().iter_rows())
            bad.update(failed.filter(~is_label).group_by("col").len().iter_rows())
        parts.append(typed.filter(parsed_ok).select(empty.columns))
    entries = pl.concat([empty, *parts]).sort("eid", "field", "array")
    return entries, bad, unmapped


def _as_text(col: str, dtype: pl.DataType) -> pl.Expr:
    """List-typed Parquet columns become one pipe-joined cell, so every format takes the same path."""
    if isinstance(dtype, pl.List):
        return pl.col(col).list.eval(pl.element().cast(pl.String)).list.join("|").alias(col)
    return pl.col(col).cast(pl.String)


def _missing(cell: pl.Expr) -> pl.Expr:
    """Blank, or NaN (how pandas and numpy write a missing number, and a Parquet float NaN as text): missing."""
    return cell.is_null() | cell.str.strip_chars().is_in(["", "nan", "NaN", "NAN"])


def _split_cell(cell: pl.Expr) -> pl.Expr:
    """A RAP multi-select cell: JSON list (quoted strings or bare numbers) or pipe-joined values."""
    json_items = cell.str.extract_all(r'"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?').list.eval(pl.element().str.strip_chars('"'))
    return pl.when(cell.str.strip_chars().str.starts_with("[")).then(json_items).otherwise(cell.str.split("|"))


def _typed_columns(f: Field) -> list[pl.Expr]:
    """The parsed value goes to the column of its type; the others stay null."""
    target = {"date": "date", "code": "code", "categorical": "num"}.get(f.type, "value")
    dtypes = {"code": pl.String, "num": pl.Int64, "value": pl.Float64, "date": pl.Date}
    parsed = _parse(pl.col("raw"), f)
    return [(parsed if name == target else pl.lit(None)).cast(dtype).alias(name) for name, dtype in dtypes.items()]


def _parse(value: pl.Expr, f: Field) -> pl.Expr:
    if f.type in _NUMERIC:
        number = value.cast(pl.Float64, strict=False)
        return pl.when(number.is_finite()).then(number)  # `inf` is no measurement: unparseable, counted
    if f.type == "date":
        return value.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
    if f.type == "code":
        # RAW `I252` or REPLACE `I25.2 Old myocardial infarction`: the leading code, without the dot.
        return value.str.extract(r"^\s*([A-Za-z0-9.]+)").str.replace_all(".", "", literal=True).str.to_uppercase()
    numeric = value.cast(pl.Float64, strict=False)
    labels = {label.lower(): code for code, label in f.labels.items()}
    by_label = value.str.strip_chars().str.to_lowercase().replace_strict(labels, default=None, return_dtype=pl.Int64)
    return (
        pl.when(numeric.is_not_null() & (numeric == numeric.round(0))).then(numeric.cast(pl.Int64)).otherwise(by_label)
    )


def _check_eids(path: Path, scalars: pl.DataFrame) -> None:
    duplicated = scalars["eid"].is_duplicated()
    if duplicated.any():
        rows = (duplicated.arg_true() + 2).head(5).to_list()
        raise ExtractError(
            f"{path}: column eid: {int(duplicated.sum())} rows share an eid with another row (file lines {rows}); "
            "each participant must appear once"
        )


def _check_bad_fraction(path: Path, scan: pl.LazyFrame, bad: dict[str, int], limit: float) -> None:
    if not bad:
        return
    filled = scan.select(pl.col(c).is_not_null().sum() for c in bad).collect(engine="streaming").row(0, named=True)
    worst = sorted(((count / max(filled[col], 1), col, count) for col, count in bad.items()), reverse=True)
    over = [(frac, col, count) for frac, col, count in worst if frac > limit]
    if over:
        listing = ", ".join(f"{col}: {count} of {filled[col]} ({frac:.1%})" for frac, col, count in over[:10])
        raise ExtractError(
            f"{path}: unparseable values above data.max_bad_fraction={limit}: {listing}. "
            "Fix the file, or raise data.max_bad_fraction to set them missing."
        )


def _decode_error(path: Path, err: Exception, encoding: str) -> ExtractError:
    text = str(err)
    if "utf" in text.lower() or "invalid" in text.lower():
        offset = _first_invalid_utf8(path)
        where = f" at byte {offset}" if offset is not None else ""
        return ExtractError(
            f"{path}: the file is not valid UTF-8{where}; re-export it as UTF-8 or set data.encoding=utf8-lossy "
            "to replace undecodable bytes"
        )
    return ExtractError(f"{path}: could not be parsed: {text.splitlines()[0]}")


def _first_invalid_utf8(path: Path, chunk: int = 1 << 24) -> int | None:
    offset = 0
    with open_bytes(path) as fh:
        while block := fh.read(chunk):
            try:
                block.decode("utf-8")
            except UnicodeDecodeError as err:
                if err.end < len(block) or err.reason != "unexpected end of data":
                    return offset + err.start
            offset += len(block)
    return None
