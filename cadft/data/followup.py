"""Follow-up of an incident analysis: the country's end of complete hospital data, death, loss to follow-up, and the
cohort counts of each labelling step (the data card's `cohort_steps`).

- Country: from the assessment centre (54, coding 10; cadft.data.ukb.centres). A participant without a known centre
  gets the earliest of the three dates (complete follow-up is only certain up to it) and is counted as `unknown`.
- Censor date: `task.censor_dates[country]`, the date up to which that country's hospital data are complete in the
  user's release (UK Biobank publishes them per release as guidance, and never trims the data).
- Follow-up ends at the earliest of baseline + horizon, the censor date, death (40000) and the date lost to follow-up
  (191). It is complete when it reaches the horizon or ends at death; otherwise it is censored, for a reason: the
  country's data end (`incomplete_followup`) or loss to follow-up (`lost_to_followup`, 190 giving why).
- Time and status (incident outcomes; the prepared table's `followup_years` and `followup_status`): years from baseline
  to the event or the end of follow-up (exactly `horizon_years` for participants followed to the horizon), and how it
  ended: EVENT, COMPETING_DEATH, or NO_EVENT (lost, the country's data end, or the horizon reached event-free).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from cadft.data.ukb.centres import CENTRE_FIELD, COUNTRIES, country_expr
from cadft.data.ukb.read import Extract

LOST_FIELD, LOST_REASON_FIELD, DEATH_DATE_FIELD = 191, 190, 40000
DAYS_PER_YEAR = 365.25
# The prepared table's follow-up columns (incident outcomes; never features): time, status and, under
# task.censoring=ipcw, the binary label's inverse-probability-of-censoring weight (cadft.data.ipcw).
TIME, STATUS, WEIGHT = "followup_years", "followup_status", "ipcw_weight"
FOLLOWUP_COLUMNS = (TIME, STATUS, WEIGHT)
# followup_status: how follow-up ended. NO_EVENT is censoring: lost, the country's data end, or the horizon.
NO_EVENT, EVENT, COMPETING_DEATH = 0, 1, 2
CENSORED = ("incomplete_followup", "lost_to_followup")  # exclusion reasons under task.censoring=exclude
# The exclusion steps in the order label() applies them; both censoring reasons are one step.
STEPS = (
    "no_baseline_date",
    "baseline_after_censor_date",
    "undated_event",
    "prevalent",
    "history_code",
    "censored",
    "competing_death",
)


def follow_up(extract: Extract, censor_dates: dict[str, dt.date], horizon_years: float) -> pl.DataFrame:
    """One row per participant: eid, baseline, country, censor_date, death, lost, lost_reason, horizon_end,
    followup_end."""
    s = extract.scalars
    optional = {"death": f"f{DEATH_DATE_FIELD}", "lost": f"f{LOST_FIELD}", "lost_reason": f"f{LOST_REASON_FIELD}"}
    dtypes = {"death": pl.Date, "lost": pl.Date, "lost_reason": pl.Int64}
    place = country_expr(pl.col(f"f{CENTRE_FIELD}"))
    censor = pl.lit(min(censor_dates.values()))
    for name in reversed(COUNTRIES):
        censor = pl.when(place == name).then(pl.lit(censor_dates[name])).otherwise(censor)
    frame = s.select(
        "eid",
        pl.col("f53").alias("baseline"),
        place.alias("country"),
        censor.alias("censor_date"),
        *[
            (pl.col(column) if column in s.columns else pl.lit(None)).cast(dtypes[name]).alias(name)
            for name, column in optional.items()
        ],
    )
    horizon_end = pl.col("baseline").dt.offset_by(_years(horizon_years))
    return frame.with_columns(horizon_end.alias("horizon_end")).with_columns(
        pl.min_horizontal("horizon_end", "censor_date", "death", "lost").alias("followup_end")
    )


def censoring(event_in_followup: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(competing death, censoring reason) for the rows of follow_up(): a death within follow-up with no event on or
    before it is a competing death; follow-up that ends before the horizon without an event or a death is censored."""
    no_event = ~event_in_followup
    died = pl.col("death").is_not_null() & (pl.col("death") <= pl.col("followup_end"))
    data_end = pl.min_horizontal("censor_date", "lost")
    lost_first = pl.col("lost").is_not_null() & (pl.col("lost") <= pl.col("censor_date"))
    reason = (
        pl.when(no_event & ~died & (data_end < pl.col("horizon_end")))
        .then(pl.when(lost_first).then(pl.lit(CENSORED[1])).otherwise(pl.lit(CENSORED[0])))
        .otherwise(pl.lit(None, pl.String))
    )
    return (no_event & died).fill_null(False), reason


def time_and_status(incident: pl.Expr, competing: pl.Expr, horizon_years: float) -> tuple[pl.Expr, pl.Expr]:
    """(followup_years, followup_status) for the rows of follow_up() with `event_day`: follow-up ends at the event for a
    case, else at followup_end; reaching the horizon's calendar date is exactly `horizon_years` (a calendar decade is
    3,652 or 3,653 days)."""
    end = pl.when(incident).then(pl.col("event_day")).otherwise(pl.col("followup_end"))
    years = (end - pl.col("baseline")).dt.total_days() / DAYS_PER_YEAR
    time = (
        pl.when(end >= pl.col("horizon_end"))
        .then(pl.lit(horizon_years))
        .otherwise(years.clip(upper_bound=horizon_years))
    )
    status = (
        pl.when(incident).then(pl.lit(EVENT)).when(competing).then(pl.lit(COMPETING_DEATH)).otherwise(pl.lit(NO_EVENT))
    )
    return time.cast(pl.Float64), status.cast(pl.Int8)


def cohort_steps(
    labels: pl.DataFrame, outcome: str, policies: dict[str, str], lost_reasons: dict[int, str]
) -> list[dict]:
    """Counts at each step of label(), in order: read, each exclusion (participants it concerns, how many it removed,
    how many remain), then cases and controls. Aggregate numbers only."""
    n = labels.height
    countries = labels.group_by(pl.col("country").fill_null("unknown")).len().sort("country")
    steps = [{"step": "read", "participants": n, "remaining": n, "countries": dict(countries.iter_rows())}]
    remaining = n
    exclusion = pl.col("exclusion")
    for step in STEPS:
        if outcome == "prevalent" and step in ("prevalent", "censored", "competing_death"):
            continue
        reasons = CENSORED if step == "censored" else (step,)
        removed = exclusion.is_in(reasons)
        reached = exclusion.is_null() | removed
        flags = {
            "history_code": pl.col("history_code"),
            "censored": pl.col("censored").is_not_null(),
            "competing_death": pl.col("competing_death"),
        }
        concerned = flags.get(step, removed)
        counts = labels.select((reached & concerned).sum().alias("participants"), removed.sum().alias("excluded")).row(
            0, named=True
        )
        remaining -= counts["excluded"]
        row = {"step": step, **counts, "remaining": remaining}
        if step in policies:
            row["policy"] = policies[step]
        if step == "prevalent" and policies.get("history_code") == "prevalent":
            row["of_which_history_code"] = labels.filter(removed & pl.col("history_code")).height
        if step == "censored":
            row["reasons"] = _censoring_reasons(labels.filter(reached & concerned), lost_reasons)
        steps.append(row)
    included = labels.filter(pl.col("included"))
    cases = int(included["label"].sum())
    controls = {"step": "controls", "participants": included.height - cases}
    if outcome == "incident":
        controls["of_which_censored"] = included.filter(pl.col("censored").is_not_null()).height
        controls["of_which_competing_death"] = included.filter(pl.col("competing_death")).height
    return steps + [{"step": "cases", "participants": cases}, controls]


def _censoring_reasons(censored: pl.DataFrame, lost_reasons: dict[int, str]) -> dict:
    """Data end by country; loss to follow-up by its reason (190) where the extract has one."""
    data_end = (
        censored.filter(pl.col("censored") == CENSORED[0])
        .group_by(pl.col("country").fill_null("unknown"))
        .len()
        .sort("country")
    )
    lost = censored.filter(pl.col("censored") == CENSORED[1])
    why = lost.group_by("lost_reason").len().sort("lost_reason", nulls_last=True)
    by_reason = {
        ("190 not recorded" if code is None else f"{code} {lost_reasons.get(code, 'unknown code')}"): k
        for code, k in why.iter_rows()
    }
    return {
        CENSORED[0]: dict(data_end.iter_rows()),
        CENSORED[1]: {"participants": lost.height, "by_190_reason": by_reason},
    }


def _years(years: float) -> str:
    whole = int(years)
    days = round((years - whole) * 365.25)
    return f"{whole}y{days}d" if days else f"{whole}y"
