"""CAD case definitions (conf/task/*.yaml) applied to an extract: prevalent and incident labels.

A qualifying event is a hospital code (ICD-10 41270/41280, ICD-9 41271/41281, OPCS-4 41272/41282)
whose stored code starts with one of the definition's prefixes, dated by the paired date slot, or a
death (40000) whose underlying (40001) or contributory (40002) cause qualifies. Self-reports at
baseline (6150, 20002, 20004, instance 0) carry no usable date and make a prevalent case.

- prevalent: a qualifying event dated on or before the baseline date (53-0.0), or a qualifying self-report.
- incident: not prevalent, and the first qualifying event falls after baseline and on or before the end
  of follow-up: the earliest of baseline + horizon_years, censor_date, death (40000) and the date lost
  to follow-up (191). Everyone else included is a non-case (deaths from other causes are non-cases).
- Undated events (a qualifying code with no date or a UKB placeholder date) cannot be placed before or
  after baseline; `undated_events` decides: exclude the participant, count them prevalent, or ignore the code.
- A participant without a baseline date, or whose baseline falls after the censor date, is excluded.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import polars as pl

from cadft.ukb.read import Extract
from cadft.errors import CadftError

HOSPITAL_SOURCES = {"icd10": (41270, 41280), "icd9": (41271, 41281), "opcs4": (41272, 41282)}
DEATH_FIELDS = (40000, 40001, 40002)
LOST_FIELD = 191
BASELINE_FIELD = 53
# UKB placeholder dates: no date, before birth, birth date, same year as birth, unknown, future placeholder.
PLACEHOLDER_DATES = [dt.date(1900, 1, 1), dt.date(1901, 1, 1), dt.date(1902, 2, 2), dt.date(1903, 3, 3), dt.date(1909, 9, 9), dt.date(2037, 7, 7)]


class TaskConfigError(CadftError):
    pass


@dataclass(frozen=True)
class Definition:
    name: str
    outcome: str
    horizon_years: float
    censor_date: dt.date
    undated_events: str
    deaths_count: bool
    icd10: tuple[str, ...]
    icd9: tuple[str, ...]
    opcs4: tuple[str, ...]
    self_report: dict[int, tuple[int, ...]]

    @classmethod
    def from_config(cls, task) -> Definition:
        """The task group (its keys' types and choices checked by cadft.config), with its codes normalised."""
        d = task.definition
        codes = {key: tuple(_normalise_code(c) for c in (d.get(key) or ())) for key in HOSPITAL_SOURCES}
        self_report = {int(k): tuple(int(c) for c in (v or ())) for k, v in (d.get("self_report") or {}).items()}
        if not any(codes.values()) and not any(self_report.values()):
            raise TaskConfigError(f"task {task.name}: task.definition lists no codes; give icd10, icd9, opcs4 or self_report codes")
        return cls(
            name=str(task.name),
            outcome=str(task.outcome),
            horizon_years=float(task.horizon_years),
            censor_date=dt.date.fromisoformat(str(task.censor_date)),
            undated_events=str(task.undated_events),
            deaths_count=bool(task.deaths_count),
            self_report={k: v for k, v in self_report.items() if v},
            **codes,
        )

    def required_fields(self) -> list[int]:
        """Fields the extract must carry for this definition to be computed as written."""
        fields = [BASELINE_FIELD]
        for key, pair in HOSPITAL_SOURCES.items():
            if getattr(self, key):
                fields += pair
        if self.deaths_count and self.icd10:
            fields += DEATH_FIELDS
        elif self.outcome == "incident":
            fields.append(40000)  # follow-up still ends at death
        return fields + list(self.self_report)

    def outcome_fields(self) -> set[int]:
        """Hospital, death and follow-up fields: none may become a feature. Self-report fields are checked
        code by code instead (stroke in 6150 is a fair feature; heart attack there is the outcome)."""
        fields = set(self.required_fields()) - {BASELINE_FIELD} - set(self.self_report)
        return fields | set(DEATH_FIELDS) | {LOST_FIELD, 42000, 42001} | {f for pair in HOSPITAL_SOURCES.values() for f in pair}


def label(extract: Extract, definition: Definition) -> pl.DataFrame:
    """One row per participant: eid, label, exclusion, included, prevalent, event_date, event_source, followup_end."""
    baseline = extract.scalars.select("eid", pl.col(f"f{BASELINE_FIELD}").alias("baseline"))
    events = _events(extract, definition).join(baseline, on="eid", how="inner").sort("eid", "date")
    undated = pl.col("date").is_null() | pl.col("date").is_in(PLACEHOLDER_DATES)
    after = ~undated & (pl.col("date") > pl.col("baseline"))
    # Rows are sorted by date, so the first row after baseline is the first incident event.
    per_person = events.group_by("eid").agg(
        (~undated & (pl.col("date") <= pl.col("baseline"))).any().alias("dated_before"),
        undated.any().alias("undated"),
        pl.col("date").filter(after).first().alias("first_after"),
        pl.col("source").filter(after).first().alias("first_source"),
    )
    people = (
        baseline.join(per_person, on="eid", how="left")
        .join(_self_reported(extract, definition), on="eid", how="left")
        .join(_followup_end(extract, definition), on="eid", how="left")
        .with_columns(pl.col("dated_before", "undated", "self_reported").fill_null(False))
    )
    undated_prevalent = pl.col("undated") & (definition.undated_events == "prevalent")
    prevalent = pl.col("dated_before") | pl.col("self_reported") | undated_prevalent
    incident = ~prevalent & pl.col("first_after").is_not_null() & (pl.col("first_after") <= pl.col("followup_end"))
    exclusion = (
        pl.when(pl.col("baseline").is_null()).then(pl.lit("no_baseline_date"))
        .when(pl.col("baseline") > pl.lit(definition.censor_date)).then(pl.lit("baseline_after_censor_date"))
        .when(pl.col("undated") & (definition.undated_events == "exclude")).then(pl.lit("undated_event"))
    )
    if definition.outcome == "incident":
        exclusion = exclusion.when(prevalent).then(pl.lit("prevalent"))
    exclusion = exclusion.otherwise(pl.lit(None, pl.String))
    return people.select(
        "eid",
        (incident if definition.outcome == "incident" else prevalent).cast(pl.Int8).alias("label"),
        exclusion.alias("exclusion"),
        exclusion.is_null().alias("included"),
        prevalent.alias("prevalent"),
        pl.when(incident).then(pl.col("first_after")).alias("event_date"),
        pl.when(incident).then(pl.col("first_source")).alias("event_source"),
        "followup_end",
    ).sort("eid")


def _events(extract: Extract, d: Definition) -> pl.DataFrame:
    """Every qualifying coded event: eid, source, date (null when the paired date slot is empty)."""
    entries = extract.entries
    frames = []
    for source, (code_field, date_field) in HOSPITAL_SOURCES.items():
        prefixes = getattr(d, source)
        if not prefixes:
            continue
        codes = entries.filter((pl.col("field") == code_field) & _matches(pl.col("code"), prefixes))
        dates = entries.filter(pl.col("field") == date_field).select("eid", "array", "date")
        frames.append(codes.select("eid", "array").join(dates, on=["eid", "array"], how="left").select("eid", pl.lit(source).alias("source"), "date"))
    if d.deaths_count and d.icd10:
        underlying = extract.scalars.filter(_matches(pl.col("f40001"), d.icd10)).select("eid")
        contributory = entries.filter((pl.col("field") == 40002) & _matches(pl.col("code"), d.icd10)).select("eid")
        fatal = pl.concat([underlying, contributory]).unique()
        deaths = extract.scalars.select("eid", pl.col("f40000").alias("date"))
        frames.append(fatal.join(deaths, on="eid", how="left").select("eid", pl.lit("death").alias("source"), "date"))
    schema = {"eid": pl.Int64, "source": pl.String, "date": pl.Date}
    return pl.concat([pl.DataFrame(schema=schema), *[f.cast(schema) for f in frames]])


def _self_reported(extract: Extract, d: Definition) -> pl.DataFrame:
    hits = [
        extract.entries.filter((pl.col("field") == field) & pl.col("num").is_in(list(codes))).select("eid")
        for field, codes in d.self_report.items()
    ]
    frame = pl.concat([pl.DataFrame(schema={"eid": pl.Int64}), *hits]).unique()
    return frame.with_columns(pl.lit(True).alias("self_reported"))


def _followup_end(extract: Extract, d: Definition) -> pl.DataFrame:
    s = extract.scalars
    candidates = [
        pl.col(f"f{BASELINE_FIELD}").dt.offset_by(_years(d.horizon_years)),
        pl.lit(d.censor_date),
    ]
    # Death is required for an incident outcome; loss to follow-up (191) is used where the extract has it.
    candidates += [pl.col(c) for c in ("f40000", f"f{LOST_FIELD}") if c in s.columns]
    return s.select("eid", pl.min_horizontal(candidates).alias("followup_end"))


def _years(years: float) -> str:
    whole = int(years)
    days = round((years - whole) * 365.25)
    return f"{whole}y{days}d" if days else f"{whole}y"


def _matches(codes: pl.Expr, prefixes: tuple[str, ...]) -> pl.Expr:
    return codes.str.contains("^(?:" + "|".join(re.escape(p) for p in prefixes) + ")")


def _normalise_code(code) -> str:
    return str(code).replace(".", "").strip().upper()
