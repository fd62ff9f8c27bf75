"""CAD case definitions (conf/task/*.yaml) applied to an extract: prevalent and incident labels.

A qualifying record is a hospital code (ICD-10 41270/41280, ICD-9 41271/41281, OPCS-4 41272/41282) whose stored code
starts with one of a code list's prefixes, dated by the paired date slot, or a death (40000) whose underlying (40001) or
contributory (40002) cause qualifies (`deaths_count`). Self-reports at baseline (6150, 20002, 20004, instance 0) carry
no usable date and make a prevalent case. Two code lists: `definition` (the event: what counts as an outcome) and
`exclude` (prior conditions that remove a participant from an incident analysis; absent: the event codes).

- prevalent: an `exclude` record dated on or before the baseline date (53-0.0), or an `exclude` self-report (for
  outcome=prevalent, the `definition` codes play both parts).
- history codes (`history_codes`, ICD-10 prefixes such as I25.2 old MI and Z95.1 graft present) record an earlier event
  whose own date is unknown. When the first qualifying `definition` record after baseline within follow-up is such a
  code (no other qualifying record on or before its date), `history_policy` decides: exclude the participant
  (`history_code`), treat them as prevalent, or count the code as the event on its date (the old behaviour).
- incident: not prevalent, and the first qualifying `definition` record falls after baseline and on or before the end
  of follow-up: the earliest of baseline + horizon_years, the censor date of the participant's country
  (`censor_dates`, the country from the assessment centre, field 54), death (40000) and the date lost to follow-up
  (191);
  cadft.data.followup has the rules.
- competing death: a death within the horizon with no event on or before it (a non-qualifying cause, or any cause when
  deaths do not count). `competing_death`: a control (default: the usual fixed-horizon binary label) or excluded.
- censored: follow-up ends before the horizon at the country's censor date or at loss to follow-up, with no event and no
  death. `censoring`: excluded (default: follow-up is incomplete), kept as a control, or kept with their follow-up time
  (`ipcw`: their binary label is unknown, weight 0, and the others are weighted by the inverse probability of
  censoring; cadft.data.ipcw).
- Undated records (a qualifying code with no date or a UKB placeholder date, in either list) cannot be placed before or
  after baseline; `undated_events` decides: exclude the participant, count them prevalent, or ignore the code.
- A participant without a baseline date, or whose baseline falls after their country's censor date, is excluded.
Exclusions apply in that order (cadft.data.followup.STEPS); the first that applies is the participant's `exclusion`.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

import polars as pl

from cadft.config import schema
from cadft.data import followup
from cadft.data.followup import LOST_FIELD, LOST_REASON_FIELD
from cadft.data.ukb.centres import CENTRE_FIELD, COUNTRIES
from cadft.data.ukb.read import Extract
from cadft.errors import CadftError

HOSPITAL_SOURCES = {"icd10": (41270, 41280), "icd9": (41271, 41281), "opcs4": (41272, 41282)}
DEATH_FIELDS = (40000, 40001, 40002)
BASELINE_FIELD = 53
OPTIONAL_FIELDS = (LOST_REASON_FIELD, LOST_FIELD)  # read where the extract has them
# UKB placeholder dates: no date, before birth, birth date, same year as birth, unknown, future placeholder.
PLACEHOLDER_DATES = [
    dt.date(1900, 1, 1),
    dt.date(1901, 1, 1),
    dt.date(1902, 2, 2),
    dt.date(1903, 3, 3),
    dt.date(1909, 9, 9),
    dt.date(2037, 7, 7),
]


class TaskConfigError(CadftError):
    pass


@dataclass(frozen=True)
class Codes:
    icd10: tuple[str, ...] = ()
    icd9: tuple[str, ...] = ()
    opcs4: tuple[str, ...] = ()
    self_report: dict[int, tuple[int, ...]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, block: schema.Codes, key: str) -> Codes:
        codes = {source: tuple(_normalise_code(c) for c in getattr(block, source)) for source in HOSPITAL_SOURCES}
        self_report = {k: tuple(v) for k, v in block.self_report.items()}
        if not any(codes.values()) and not any(self_report.values()):
            raise TaskConfigError(f"{key} lists no codes; give icd10, icd9, opcs4 or self_report codes")
        return cls(self_report={k: v for k, v in self_report.items() if v}, **codes)


@dataclass(frozen=True)
class Definition:
    name: str
    outcome: str
    horizon_years: float
    censor_dates: dict[str, dt.date]
    censoring: str
    competing_death: str
    history_codes: tuple[str, ...]
    history_policy: str
    undated_events: str
    deaths_count: bool
    icd10: tuple[str, ...]  # the event codes (task.definition)
    icd9: tuple[str, ...]
    opcs4: tuple[str, ...]
    self_report: dict[int, tuple[int, ...]]
    prior: Codes  # what makes a participant prevalent: task.exclude, or the event codes

    @classmethod
    def from_config(cls, task: schema.Task) -> Definition:
        """The task group (typed and checked by cadft.config), with its codes normalised."""
        event = Codes.from_config(task.definition, f"task {task.name}: task.definition")
        exclude = task.exclude
        if exclude is not None and task.outcome != "incident":
            raise TaskConfigError(
                f"task {task.name}: task.exclude applies to incident outcomes only; set task.exclude=null for "
                f"task.outcome={task.outcome} (task.definition is the prevalent condition)"
            )
        if task.censoring == "ipcw" and task.outcome != "incident":
            raise TaskConfigError(
                f"task {task.name}: task.censoring=ipcw weights follow-up, which only incident outcomes have; use "
                f"task.censoring=exclude for task.outcome={task.outcome}"
            )
        return cls(
            name=task.name,
            outcome=task.outcome,
            horizon_years=task.horizon_years,
            censor_dates={c: dt.date.fromisoformat(getattr(task.censor_dates, c)) for c in COUNTRIES},
            censoring=task.censoring,
            competing_death=task.competing_death,
            history_codes=tuple(_normalise_code(c) for c in task.history_codes),
            history_policy=task.history_policy,
            undated_events=task.undated_events,
            deaths_count=task.deaths_count,
            icd10=event.icd10,
            icd9=event.icd9,
            opcs4=event.opcs4,
            self_report=event.self_report,
            prior=event if exclude is None else Codes.from_config(exclude, f"task {task.name}: task.exclude"),
        )

    @property
    def event(self) -> Codes:
        return Codes(self.icd10, self.icd9, self.opcs4, self.self_report)

    def required_fields(self) -> list[int]:
        """Fields the extract must carry for this definition to be computed as written."""
        fields = [BASELINE_FIELD, CENTRE_FIELD]
        for key, pair in HOSPITAL_SOURCES.items():
            if getattr(self, key) or getattr(self.prior, key):
                fields += pair
        if self.deaths_count and self.icd10:
            fields += DEATH_FIELDS
        elif self.outcome == "incident":
            fields.append(40000)  # follow-up still ends at death
        self_report = self.self_report if self.outcome == "prevalent" else self.prior.self_report
        return list(dict.fromkeys(fields + list(self_report)))

    def outcome_fields(self) -> set[int]:
        """Hospital, death and follow-up fields: none may become a feature. Self-report fields are checked
        code by code instead (stroke in 6150 is a fair feature; heart attack there is the outcome)."""
        hospital = {f for pair in HOSPITAL_SOURCES.values() for f in pair}
        return hospital | set(DEATH_FIELDS) | {LOST_FIELD, LOST_REASON_FIELD, 42000, 42001}

    def policies(self) -> dict[str, str]:
        """The policy of each step of cadft.data.followup.STEPS that has one (the data card's cohort_steps)."""
        policies = {"undated_event": self.undated_events, "history_code": self.history_policy}
        if self.outcome == "incident":
            policies |= {"censored": self.censoring, "competing_death": self.competing_death}
        return policies


def label(extract: Extract, definition: Definition) -> pl.DataFrame:
    """One row per participant: eid, label, exclusion, included, prevalent, event_date, event_source, followup_end,
    country, censored (the censoring reason, null when follow-up is complete or ends at an event), competing_death,
    history_code (the history rule decided), lost_reason (190), and for incident outcomes followup_years and
    followup_status (cadft.data.followup.time_and_status; null for prevalent participants)."""
    d = definition
    people = followup.follow_up(extract, d.censor_dates, d.horizon_years)
    dated = people.select("eid", "baseline")
    undated = pl.col("date").is_null() | pl.col("date").is_in(PLACEHOLDER_DATES)
    after = ~undated & (pl.col("date") > pl.col("baseline"))
    prior_codes = d.prior if d.outcome == "incident" else d.event
    prior = _events(extract, prior_codes, deaths=False, history=()).join(dated, on="eid", how="inner")
    events = (
        _events(extract, d.event, deaths=d.deaths_count, history=d.history_codes)
        .join(dated, on="eid", how="inner")
        .sort("eid", "date")
    )
    per_prior = prior.group_by("eid").agg(
        (~undated & (pl.col("date") <= pl.col("baseline"))).any().alias("dated_before"),
        undated.any().alias("undated_prior"),
    )
    # Rows are sorted by date, so the first row after baseline is the first incident record.
    real = after & ~pl.col("history")
    per_event = events.group_by("eid").agg(
        undated.any().alias("undated_event"),
        pl.col("date").filter(real).first().alias("first_event"),
        pl.col("source").filter(real).first().alias("first_source"),
        pl.col("date").filter(after & pl.col("history")).first().alias("first_history"),
    )
    people = (
        people.join(per_prior, on="eid", how="left")
        .join(per_event, on="eid", how="left")
        .join(_self_reported(extract, prior_codes), on="eid", how="left")
        .with_columns(pl.col("dated_before", "undated_prior", "undated_event", "self_reported").fill_null(False))
    )
    history = (pl.col("first_history") <= pl.col("followup_end")) & (
        pl.col("first_event").is_null() | (pl.col("first_history") < pl.col("first_event"))
    )
    history_event = history & (d.history_policy == "event")
    event_date = pl.when(history_event).then(pl.col("first_history")).otherwise(pl.col("first_event"))
    people = people.with_columns(
        (pl.col("undated_prior") | pl.col("undated_event")).alias("undated"),
        history.fill_null(False).alias("history"),
        event_date.alias("event_day"),
        pl.when(history_event).then(pl.lit("icd10")).otherwise(pl.col("first_source")).alias("event_from"),
    )
    undated_prevalent = pl.col("undated") & (d.undated_events == "prevalent")
    other_prevalent = pl.col("dated_before") | pl.col("self_reported") | undated_prevalent
    history_code = ~other_prevalent & pl.col("history")
    prevalent = other_prevalent | (history_code & (d.history_policy == "prevalent"))
    in_followup = pl.col("event_day").is_not_null() & (pl.col("event_day") <= pl.col("followup_end"))
    incident = ~prevalent & in_followup
    competing, censored = followup.censoring(in_followup)
    exclusion = (
        pl.when(pl.col("baseline").is_null())
        .then(pl.lit("no_baseline_date"))
        .when(pl.col("baseline") > pl.col("censor_date"))
        .then(pl.lit("baseline_after_censor_date"))
        .when(pl.col("undated") & (d.undated_events == "exclude"))
        .then(pl.lit("undated_event"))
    )
    if d.outcome == "incident":
        exclusion = exclusion.when(prevalent).then(pl.lit("prevalent"))
    exclusion = exclusion.when(history_code & (d.history_policy == "exclude")).then(pl.lit("history_code"))
    if d.outcome == "incident":
        exclusion = exclusion.when(censored.is_not_null() & (d.censoring == "exclude")).then(censored)
        exclusion = exclusion.when(competing & (d.competing_death == "exclude")).then(pl.lit("competing_death"))
    exclusion = exclusion.otherwise(pl.lit(None, pl.String))
    time, status = followup.time_and_status(incident, competing, d.horizon_years)
    at_risk = ~prevalent if d.outcome == "incident" else pl.lit(False)
    return people.select(
        "eid",
        (incident if d.outcome == "incident" else prevalent).cast(pl.Int8).alias("label"),
        exclusion.alias("exclusion"),
        exclusion.is_null().alias("included"),
        prevalent.alias("prevalent"),
        pl.when(incident).then(pl.col("event_day")).alias("event_date"),
        pl.when(incident).then(pl.col("event_from")).alias("event_source"),
        "followup_end",
        "country",
        (pl.when(~prevalent).then(censored) if d.outcome == "incident" else pl.lit(None, pl.String)).alias("censored"),
        ((competing & ~prevalent) if d.outcome == "incident" else pl.lit(False)).alias("competing_death"),
        history_code.alias("history_code"),
        "lost_reason",
        pl.when(at_risk).then(time).alias(followup.TIME),
        pl.when(at_risk).then(status).alias(followup.STATUS),
    ).sort("eid")


def _events(extract: Extract, codes: Codes, *, deaths: bool, history: tuple[str, ...]) -> pl.DataFrame:
    """Every qualifying coded record: eid, source, date (null when the paired date slot is empty), history (an ICD-10
    history code; a death whose qualifying causes are all history codes)."""
    entries = extract.entries
    frames = []
    for source, (code_field, date_field) in HOSPITAL_SOURCES.items():
        prefixes = getattr(codes, source)
        if not prefixes:
            continue
        found = entries.filter((pl.col("field") == code_field) & matches_prefix(pl.col("code"), prefixes))
        is_history = matches_prefix(pl.col("code"), history) if source == "icd10" and history else pl.lit(False)
        dates = entries.filter(pl.col("field") == date_field).select("eid", "array", "date")
        frames.append(
            found.select("eid", "array", is_history.alias("history"))
            .join(dates, on=["eid", "array"], how="left")
            .select("eid", pl.lit(source).alias("source"), "date", "history")
        )
    if deaths and codes.icd10:
        underlying = extract.scalars.select("eid", pl.col("f40001").alias("code")).filter(
            matches_prefix(pl.col("code"), codes.icd10)
        )
        contributory = entries.filter((pl.col("field") == 40002) & matches_prefix(pl.col("code"), codes.icd10)).select(
            "eid", "code"
        )
        causes = pl.concat([underlying, contributory]).with_columns(
            (matches_prefix(pl.col("code"), history) if history else pl.lit(False)).alias("history")
        )
        fatal = causes.group_by("eid").agg(pl.col("history").all())
        dates = extract.scalars.select("eid", pl.col("f40000").alias("date"))
        frames.append(
            fatal.join(dates, on="eid", how="left").select("eid", pl.lit("death").alias("source"), "date", "history")
        )
    schema = {"eid": pl.Int64, "source": pl.String, "date": pl.Date, "history": pl.Boolean}
    return pl.concat([pl.DataFrame(schema=schema), *[f.cast(schema) for f in frames]])


def _self_reported(extract: Extract, codes: Codes) -> pl.DataFrame:
    hits = [
        extract.entries.filter((pl.col("field") == field) & pl.col("num").is_in(list(values))).select("eid")
        for field, values in codes.self_report.items()
    ]
    frame = pl.concat([pl.DataFrame(schema={"eid": pl.Int64}), *hits]).unique()
    return frame.with_columns(pl.lit(True).alias("self_reported"))


def matches_prefix(codes: pl.Expr, prefixes: tuple[str, ...]) -> pl.Expr:
    return codes.str.contains("^(?:" + "|".join(re.escape(p) for p in prefixes) + ")")


def _normalise_code(code) -> str:
    return str(code).replace(".", "").strip().upper()
