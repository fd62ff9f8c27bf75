"""Writing a simulated cohort in the layouts real extracts come in (shared ukb_reference.md section 1).

  showcase  CSV, `eid`, `FIELD-INSTANCE.ARRAY` (instance 0 also for fields without instances), every
            value double-quoted, missing `""`
  tab       tab-separated, `f.eid`, `f.FIELD.INSTANCE.ARRAY`, missing `NA`
  rap       CSV, `eid`, `p31`, `p21003_i0`, `p4080_i0_a1`, `p41280_a12`; multi-select fields in ONE cell
            (`p41270`, `p6150_i0`) as a JSON list or pipe-joined; quoted only where needed, missing empty
  parquet   the same content with showcase or rap column names and real types (integers, floats, dates);
            with rap names a multi-select field is a list column (so --multi-cell does not apply)

Every registry field gets the registry's full array width. Coding "replace" writes labels instead of
codes: the registry's coding labels for categorical fields, "I25.2 Old myocardial infarction" for
ICD-10/ICD-9/OPCS-4 codes. Files are written row-chunk by row-chunk (bounded memory for 502k people)
to a temporary file in the target folder that is renamed only once everything was written.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from cadft.data.ukb.columns import rap_name, showcase_name, tab_name
from cadft.data.ukb.registry import Field, load_registry
from cadft.files import atomic_file
from cadft.synth.codelists import code_tables
from cadft.synth.simulate import Simulation

FORMATS = ("showcase", "tab", "rap", "parquet")
CODINGS = ("raw", "replace")
MULTI_CELLS = ("json", "pipe")
PARQUET_NAMINGS = ("showcase", "rap")
CODE_SYSTEMS = ("icd10", "icd9", "opcs4")
CELLS_PER_CHUNK = 20_000_000
_EMPTY_DTYPES = {
    "continuous": pl.Float64,
    "integer": pl.Int64,
    "categorical": pl.Int64,
    "date": pl.Date,
    "code": pl.String,
}


@dataclass(frozen=True)
class Layout:
    format: str = "showcase"
    coding: str = "raw"
    multi_cell: str = "json"
    parquet_naming: str = "showcase"

    def __post_init__(self):
        for value, allowed, what in (
            (self.format, FORMATS, "format"),
            (self.coding, CODINGS, "coding"),
            (self.multi_cell, MULTI_CELLS, "multi-cell encoding"),
            (self.parquet_naming, PARQUET_NAMINGS, "parquet naming"),
        ):
            if value not in allowed:
                raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")

    @property
    def naming(self) -> str:
        return self.parquet_naming if self.format == "parquet" else self.format


def _source_name(field: int, instance: int) -> str:
    return f"f{field}_{instance}"


def _labels(spec: Field, coding: str) -> dict | None:
    """Code -> label for REPLACE coding, or None when the field's values are written as they are."""
    if coding != "replace" or spec.coding is None:
        return None
    if spec.coding in CODE_SYSTEMS:
        return code_tables()["labels"][spec.coding]
    return spec.labels


def _decode(expr: pl.Expr, labels: dict | None) -> pl.Expr:
    if labels is None:
        return expr
    return expr.replace_strict(list(labels), list(labels.values()), return_dtype=pl.String)


def _multi_cell(src: pl.Expr, labels: dict | None, numeric: bool, encoding: str) -> pl.Expr:
    """One cell for a multi-select list: `["I251","E119"]` / `[1,2]` (JSON) or `I251|E119` (pipe)."""
    items = src.list.eval(_decode(pl.element(), labels).cast(pl.String))
    if encoding == "pipe":
        return items.list.join("|")
    if numeric and labels is None:
        return pl.concat_str(pl.lit("["), items.list.join(","), pl.lit("]"))
    escaped = items.list.eval(
        pl.element().str.replace_all("\\", "\\\\", literal=True).str.replace_all('"', '\\"', literal=True)
    )
    return pl.concat_str(pl.lit('["'), escaped.list.join('","'), pl.lit('"]'))


def output_columns(sim: Simulation, layout: Layout) -> list[pl.Expr]:
    """Expressions over the source frame (see `_source_frame`) giving the extract's columns in order:
    fields by ID, then instance, then array slot, as ukbconv orders them."""
    registry = load_registry()
    unsimulated = sorted(fid for fid in registry if (fid, 0) not in sim.fields)
    if unsimulated:
        print(f"cadft-synth: no simulated values for registry fields {unsimulated}; written empty", file=sys.stderr)
    columns = [pl.col("eid").alias("f.eid" if layout.naming == "tab" else "eid")]
    for fid in sorted(registry):
        for instance in sorted({inst for f, inst in sim.fields if f == fid} or {0}):
            columns += _field_columns(registry[fid], instance, sim.fields.get((fid, instance)), layout)
    return columns


def _field_columns(spec: Field, instance: int, values: pl.Series | None, layout: Layout) -> list[pl.Expr]:
    labels = _labels(spec, layout.coding)
    src = pl.col(_source_name(spec.id, instance))
    if layout.naming == "rap" and spec.multi:  # one cell (or one list column) for all answers
        name = rap_name(spec.id, instance if spec.instanced else None, None)
        if values is None:
            return [pl.lit(None, pl.String).alias(name)]
        if layout.format == "parquet":
            return [(src if labels is None else src.list.eval(_decode(pl.element(), labels))).alias(name)]
        return [_multi_cell(src, labels, values.dtype.inner.is_numeric(), layout.multi_cell).alias(name)]
    slots = []
    for slot in range(spec.arrays):
        if values is None:
            value = pl.lit(None, _EMPTY_DTYPES[spec.type])
        elif isinstance(values.dtype, pl.List):
            value = src.list.get(slot, null_on_oob=True)
        else:
            value = src if slot == 0 else pl.lit(None, values.dtype)
        slots.append(_decode(value, labels).alias(_column_name(layout.naming, spec, instance, slot)))
    return slots


def _column_name(naming: str, spec: Field, instance: int, slot: int) -> str:
    if naming == "showcase":
        return showcase_name(spec.id, instance, slot)
    if naming == "tab":
        return tab_name(spec.id, instance, slot)
    return rap_name(spec.id, instance if spec.instanced else None, slot if spec.arrays > 1 else None)


def _source_frame(sim: Simulation) -> pl.DataFrame:
    return pl.DataFrame([sim.eid.alias("eid"), *(s.alias(_source_name(*key)) for key, s in sim.fields.items())])


def _chunks(sim: Simulation, layout: Layout) -> Iterator[pl.DataFrame]:
    source = _source_frame(sim)
    columns = output_columns(sim, layout)
    rows = max(1_000, CELLS_PER_CHUNK // len(columns))
    for start in range(0, sim.n, rows):
        yield source.slice(start, rows).select(columns)


def write_cohort(sim: Simulation, extract: Path, oracle: Path, layout: Layout) -> None:
    """Write the extract and the oracle; both appear only when both were written in full."""
    with atomic_file(extract) as extract_tmp, atomic_file(oracle) as oracle_tmp:
        if layout.format == "parquet":
            _write_parquet(sim, layout, extract_tmp)
        else:
            _write_delimited(sim, layout, extract_tmp)
        sim.oracle.write_csv(oracle_tmp, float_precision=8)


def _write_delimited(sim: Simulation, layout: Layout, tmp: Path) -> None:
    options = {
        "showcase": {"separator": ",", "quote_style": "always", "null_value": ""},
        "tab": {"separator": "\t", "quote_style": "necessary", "null_value": "NA"},
        "rap": {"separator": ",", "quote_style": "necessary", "null_value": ""},
    }[layout.format]
    with open(tmp, "wb") as out:
        for i, chunk in enumerate(_chunks(sim, layout)):
            chunk.write_csv(out, include_header=i == 0, date_format="%Y-%m-%d", **options)


def _write_parquet(sim: Simulation, layout: Layout, tmp: Path) -> None:
    writer = None
    try:
        for chunk in _chunks(sim, layout):
            table = chunk.to_arrow(compat_level=pl.CompatLevel.oldest())
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def default_oracle_path(extract: Path) -> Path:
    """`<stem>.oracle.csv` next to the extract (cohort.csv -> cohort.oracle.csv)."""
    return extract.with_name(f"{extract.stem}.oracle.csv")
