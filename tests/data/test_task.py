"""Hard-CAD, broad-CHD and prevalent labels on hand-checked edge cases (tests/edge_cases.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cadft.config.compose import compose
from cadft.config.schema import Codes
from cadft.config.validate import validate_group
from cadft.data.card import summary_lines
from cadft.data.task import OPTIONAL_FIELDS, Definition, TaskConfigError, label
from cadft.data.ukb.read import read_extract
from cadft.tracking.names import cohort_params
from tests.edge_cases import EDGE_CASES, people
from tests.extracts import base_person, write_showcase


@pytest.fixture
def extract(tmp_path):
    path = write_showcase(tmp_path / "edge.csv", people())
    fields = {
        f for task in ("hard_cad", "broad_chd", "hard_cad_prevalent") for f in _definition(task).required_fields()
    }
    return read_extract(path, sorted(fields), optional_ids=OPTIONAL_FIELDS)


def _definition(task: str) -> Definition:
    return Definition.from_config(validate_group(compose("config", [f"task={task}"]), "task"))


@pytest.mark.parametrize(("task", "column"), [("hard_cad", 1), ("hard_cad_prevalent", 2), ("broad_chd", 3)])
def test_edge_cases(extract, task, column):
    labels = {row["eid"]: row for row in label(extract, _definition(task)).iter_rows(named=True)}
    for name, case in EDGE_CASES.items():
        row, expected = labels[case[0]["eid"]], case[column]
        got = row["exclusion"] if isinstance(expected, str) else row["label"]
        assert got == expected, f"{task}: {name}: expected {expected}, got {got} ({row})"
        assert row["included"] == (not isinstance(expected, str)), name


def test_incident_event_date_and_source(extract):
    rows = {r["eid"]: r for r in label(extract, _definition("hard_cad")).iter_rows(named=True)}
    later_slot = rows[EDGE_CASES["mi_in_later_slot"][0]["eid"]]
    assert str(later_slot["event_date"]) == "2016-09-09" and later_slot["event_source"] == "icd10"
    death = rows[EDGE_CASES["death_first_event"][0]["eid"]]
    assert str(death["event_date"]) == "2011-11-11" and death["event_source"] == "death"
    lost = rows[EDGE_CASES["lost_before_event"][0]["eid"]]
    assert str(lost["followup_end"]) == "2010-02-02"


def test_undated_policies(extract, make_config):
    undated = EDGE_CASES["undated_code"][0]["eid"]
    for policy, expected in (("prevalent", "prevalent"), ("ignore", None)):
        task = make_config("task=hard_cad", f"task.undated_events={policy}").task
        row = label(extract, Definition.from_config(task)).filter(eid=undated).row(0, named=True)
        assert row["exclusion"] == expected and row["label"] == 0


def test_horizon_is_config(extract, make_config):
    after_horizon = EDGE_CASES["mi_after_horizon"][0]["eid"]
    task = make_config("task.horizon_years=12").task
    assert label(extract, Definition.from_config(task)).filter(eid=after_horizon)["label"].item() == 1


def test_mi_definition_drops_revascularisation(extract):
    rows = {r["eid"]: r for r in label(extract, _definition("mi")).iter_rows(named=True)}
    assert rows[EDGE_CASES["cabg_after_baseline"][0]["eid"]]["label"] == 0
    assert rows[EDGE_CASES["self_report_ptca"][0]["eid"]]["exclusion"] is None
    assert rows[EDGE_CASES["death_first_event"][0]["eid"]]["label"] == 1


def test_new_phenotype_in_yaml_alone(extract, make_config):
    """A user-defined outcome: any hypertension code (I10) after baseline."""
    task = make_config(
        "task.name=hypertension",
        "task.definition.icd10=[I10]",
        "task.definition.icd9=[]",
        "task.definition.opcs4=[]",
        "task.definition.self_report={}",
        "task.deaths_count=false",
    ).task
    rows = {r["eid"]: r for r in label(extract, Definition.from_config(task)).iter_rows(named=True)}
    assert rows[EDGE_CASES["noise_only"][0]["eid"]]["label"] == 1  # I10 in 2009, after the 2008 baseline
    assert rows[EDGE_CASES["old_mi_before_baseline"][0]["eid"]]["exclusion"] == "prevalent"  # I10 in 2001
    assert rows[EDGE_CASES["angina_only"][0]["eid"]]["label"] == 0


def test_a_task_without_codes_is_refused(make_config):
    """The keys' types and choices are checked with the config (tests/config/test_validate.py); the codes here."""
    task = replace(make_config().task, definition=Codes(icd10=[], icd9=[], opcs4=[], self_report={6150: []}))
    with pytest.raises(TaskConfigError, match=r"task.definition lists no codes"):
        Definition.from_config(task)


# --- follow-up, competing deaths, history codes, exclusion lists (cadft.data.followup) --------------------------------
# Hand-made participants with known answers. Default baseline 2008-06-15 in Leeds (England, censor date 2022-10-31);
# Wales' default censor date is 2018-02-28, Scotland's 2022-08-31 (conf/task/hard_cad.yaml).
CARDIFF, SWANSEA, GLASGOW = 11003, 11022, 11004


def _person(eid: int, **changes) -> dict:
    person = base_person(eid)
    person.update({int(k[1:]): v for k, v in changes.items()})
    return person


FOLLOW_UP = {
    # recruited late in Wales: the horizon (2019-09-01) is after Wales' censor date, no event: incomplete follow-up
    "welsh_late": _person(3000001, f53="2009-09-01", f54=SWANSEA),
    # the same dates in England: follow-up reaches the horizon before England's censor date
    "english_late": _person(3000002, f53="2009-09-01"),
    # recruited late in Wales with an MI before Wales' censor date: a case whatever the censoring policy
    "welsh_late_mi": _person(3000003, f53="2009-09-01", f54=CARDIFF, f41270=[("I214", "2015-01-01")]),
    # recruited early in Wales: the horizon (2017-03-01) comes before Wales' censor date
    "welsh_early": _person(3000004, f53="2007-03-01", f54=CARDIFF),
    # recruited at the end of recruitment in Scotland: complete follow-up (horizon 2020-10-01)
    "scottish_late": _person(3000005, f53="2010-10-01", f54=GLASGOW),
    # lost to follow-up (191) before the horizon, reason 190 = 3 (NHS says left the UK), no event
    "lost": _person(3000006, f191="2012-03-03", f190=3),
    # lost to follow-up after an MI: the MI counts
    "lost_after_mi": _person(3000007, f191="2013-03-03", f41270=[("I219", "2011-05-05")]),
    # death from lung cancer before the horizon, no event before it: a competing death
    "competing_death": _person(3000008, f40000="2014-04-04", f40001="C349"),
    # an MI, then death from another cause: a case, not a competing death
    "mi_then_death": _person(3000009, f40000="2013-04-04", f40001="C349", f41270=[("I211", "2011-01-01")]),
    # death from another cause after the horizon: follow-up is complete, a control
    "death_after_horizon": _person(3000010, f40000="2019-04-04", f40001="C349"),
    # old MI (I25.2) first recorded after baseline, nothing before it: the MI's own date is unknown
    "i252_after_baseline": _person(3000011, f41270=[("I252", "2012-02-02"), ("I10", "2001-01-01")]),
    # I25.2 recorded after an acute MI after baseline: the acute MI is the event
    "i252_after_mi": _person(3000012, f41270=[("I252", "2012-02-02"), ("I219", "2011-01-01")]),
    # I25.2 first recorded after the horizon: outside follow-up, a control
    "i252_after_horizon": _person(3000013, f41270=[("I252", "2019-02-02")]),
    # stroke (I63.9) before baseline: prior CVD, but not prior CAD
    "prior_stroke": _person(3000014, f41270=[("I639", "2005-05-05")]),
    # stroke after baseline: neither an event nor (after baseline) an exclusion
    "stroke_after_baseline": _person(3000015, f41270=[("I639", "2012-05-05")]),
    # self-reported stroke (6150 = 3) at baseline: prior CVD by self-report
    "self_reported_stroke": _person(3000016, f6150=[3]),
    # incident MI, no prior CVD
    "incident_mi": _person(3000017, f41270=[("I214", "2013-03-03")]),
}
EIDS = {name: person["eid"] for name, person in FOLLOW_UP.items()}


@pytest.fixture
def follow_up_extract(tmp_path):
    path = write_showcase(tmp_path / "follow_up.csv", list(FOLLOW_UP.values()))
    fields = {f for task in ("hard_cad", "hard_cad_no_prior_cvd") for f in _definition(task).required_fields()}
    return read_extract(path, sorted(fields), optional_ids=OPTIONAL_FIELDS)


def _rows(extract, make_config, *overrides: str, task: str = "hard_cad") -> dict[str, dict]:
    rows = {
        r["eid"]: r
        for r in label(extract, Definition.from_config(make_config(f"task={task}", *overrides).task)).iter_rows(
            named=True
        )
    }
    return {name: rows[eid] for name, eid in EIDS.items()}


def _outcome(row: dict):
    """The label of an included participant, else the exclusion reason."""
    return row["label"] if row["included"] else row["exclusion"]


def test_censoring_per_country(follow_up_extract, make_config):
    excluded = _rows(follow_up_extract, make_config)
    kept = _rows(follow_up_extract, make_config, "task.censoring=control")
    assert excluded["welsh_late"]["country"] == "Wales" and excluded["english_late"]["country"] == "England"
    assert _outcome(excluded["welsh_late"]) == "incomplete_followup" and _outcome(kept["welsh_late"]) == 0
    assert str(excluded["welsh_late"]["followup_end"]) == "2018-02-28"
    assert kept["welsh_late"]["censored"] == "incomplete_followup"  # kept as a control, still flagged
    for rows in (excluded, kept):
        assert _outcome(rows["english_late"]) == 0 and rows["english_late"]["censored"] is None
        assert str(rows["english_late"]["followup_end"]) == "2019-09-01"
        assert _outcome(rows["welsh_late_mi"]) == 1 and str(rows["welsh_late_mi"]["event_date"]) == "2015-01-01"
        assert _outcome(rows["welsh_early"]) == 0 and rows["welsh_early"]["censored"] is None
        assert _outcome(rows["scottish_late"]) == 0 and rows["scottish_late"]["country"] == "Scotland"
        assert _outcome(rows["lost_after_mi"]) == 1
    # a Welsh date after the Welsh horizon: complete follow-up
    later = _rows(follow_up_extract, make_config, "task.censor_dates.Wales=2020-01-31")
    assert _outcome(later["welsh_late"]) == 0 and later["welsh_late"]["censored"] is None


def test_lost_to_follow_up(follow_up_extract, make_config):
    excluded = _rows(follow_up_extract, make_config)
    kept = _rows(follow_up_extract, make_config, "task.censoring=control")
    assert _outcome(excluded["lost"]) == "lost_to_followup" and _outcome(kept["lost"]) == 0
    assert str(kept["lost"]["followup_end"]) == "2012-03-03" and kept["lost"]["lost_reason"] == 3


def test_competing_death(follow_up_extract, make_config):
    default = _rows(follow_up_extract, make_config)
    excluded = _rows(follow_up_extract, make_config, "task.competing_death=exclude")
    assert _outcome(default["competing_death"]) == 0 and default["competing_death"]["competing_death"]
    assert _outcome(excluded["competing_death"]) == "competing_death"
    for rows in (default, excluded):
        assert _outcome(rows["mi_then_death"]) == 1 and not rows["mi_then_death"]["competing_death"]
        assert _outcome(rows["death_after_horizon"]) == 0 and not rows["death_after_horizon"]["competing_death"]


def test_time_and_status(tmp_path, make_config):
    """Years from baseline to the event or the end of follow-up, and how it ended, whatever the censoring policy
    (days counted by hand; a calendar decade from 2008-06-15 is 3,652 days, written as exactly 10 years)."""
    after_horizon = _person(3000018, f41270=[("I214", "2019-01-01")])  # an MI after the 2018-06-15 horizon
    path = write_showcase(tmp_path / "time.csv", [*FOLLOW_UP.values(), after_horizon])
    extract = read_extract(path, sorted(_definition("hard_cad").required_fields()), optional_ids=OPTIONAL_FIELDS)
    expected = {  # name: (followup_years, followup_status: 0 no event, 1 event, 2 competing death)
        "welsh_late": (3102 / 365.25, 0),  # 2009-09-01 to Wales' data end 2018-02-28: censored before the horizon
        "english_late": (10.0, 0),  # the horizon reached event-free
        "welsh_late_mi": (1948 / 365.25, 1),  # 2009-09-01 to the MI on 2015-01-01
        "lost": (1357 / 365.25, 0),  # 2008-06-15 to lost on 2012-03-03
        "competing_death": (2119 / 365.25, 2),  # 2008-06-15 to the death on 2014-04-04
        "mi_then_death": (930 / 365.25, 1),  # the MI on 2011-01-01 ends follow-up, not the death
        "death_after_horizon": (10.0, 0),
    }
    for policy in ("exclude", "control", "ipcw"):
        definition = Definition.from_config(make_config(f"task.censoring={policy}").task)
        rows = {r["eid"]: r for r in label(extract, definition).iter_rows(named=True)}
        for name, (years, status) in expected.items():
            row = rows[EIDS[name]]
            assert (row["followup_years"], row["followup_status"]) == pytest.approx((years, status), abs=1e-12), name
        assert (rows[3000018]["label"], rows[3000018]["followup_years"], rows[3000018]["followup_status"]) == (0, 10, 0)
        welsh_late = rows[EIDS["welsh_late"]]
        assert welsh_late["included"] == (policy != "exclude") and welsh_late["label"] == 0
    prevalent = label(extract, _definition("hard_cad_prevalent"))
    assert prevalent["followup_years"].null_count() == prevalent.height  # no follow-up for a prevalent outcome


def test_history_codes(follow_up_extract, make_config):
    expected = {"exclude": "history_code", "prevalent": "prevalent", "event": 1}
    for policy, outcome in expected.items():
        rows = _rows(follow_up_extract, make_config, f"task.history_policy={policy}")
        assert _outcome(rows["i252_after_baseline"]) == outcome, policy
        assert rows["i252_after_baseline"]["prevalent"] == (policy == "prevalent")
        assert _outcome(rows["i252_after_mi"]) == 1 and str(rows["i252_after_mi"]["event_date"]) == "2011-01-01"
        assert _outcome(rows["i252_after_horizon"]) == 0, policy
    event = _rows(follow_up_extract, make_config, "task.history_policy=event")["i252_after_baseline"]
    assert str(event["event_date"]) == "2012-02-02" and event["event_source"] == "icd10"
    # no history codes: I25.2 is an ordinary event code again
    assert _outcome(_rows(follow_up_extract, make_config, "task.history_codes=[]")["i252_after_baseline"]) == 1
    # (the treatment features a prevalent task refuses do not change the labels)
    prevalent = _rows(
        follow_up_extract,
        make_config,
        "task.history_policy=prevalent",
        "data.allow_treatment_features=true",
        task="hard_cad_prevalent",
    )
    assert _outcome(prevalent["i252_after_baseline"]) == 1


def test_exclude_list_differs_from_event_list(follow_up_extract, make_config):
    hard_cad = _rows(follow_up_extract, make_config)
    no_prior_cvd = _rows(follow_up_extract, make_config, task="hard_cad_no_prior_cvd")
    assert _outcome(hard_cad["prior_stroke"]) == 0 and _outcome(hard_cad["self_reported_stroke"]) == 0
    assert (
        _outcome(no_prior_cvd["prior_stroke"]) == "prevalent"
        and _outcome(no_prior_cvd["self_reported_stroke"]) == "prevalent"
    )
    for rows in (hard_cad, no_prior_cvd):
        assert _outcome(rows["stroke_after_baseline"]) == 0  # a stroke is no event
        assert _outcome(rows["incident_mi"]) == 1


def test_exclude_list_only_for_incident_outcomes(make_config):
    task = replace(make_config("task=hard_cad_no_prior_cvd").task, outcome="prevalent")
    with pytest.raises(TaskConfigError, match=r"task.exclude applies to incident outcomes only"):
        Definition.from_config(task)


def test_cohort_counts_in_the_card(make_config, tmp_path):
    """cadft prepare's data card counts each step; the numbers follow from FOLLOW_UP (plus 40 plain controls)."""
    from cadft.data.prepare import prepare

    controls = [base_person(4000000 + i, sex=i % 2, age=40 + i % 30) for i in range(40)]
    path = write_showcase(tmp_path / "cohort.csv", list(FOLLOW_UP.values()) + controls)
    card = prepare(make_config(f"data.path={path}", "task.competing_death=exclude")).card
    steps = {step["step"]: step for step in card["cohort_steps"]}
    assert [s["step"] for s in card["cohort_steps"]] == [
        "read",
        "no_baseline_date",
        "baseline_after_censor_date",
        "undated_event",
        "prevalent",
        "history_code",
        "censored",
        "competing_death",
        "cases",
        "controls",
    ]
    n = len(FOLLOW_UP) + 40
    assert steps["read"] == {
        "step": "read",
        "participants": n,
        "remaining": n,
        "countries": {"England": n - 4, "Scotland": 1, "Wales": 3},
    }
    assert steps["prevalent"]["excluded"] == 0  # no prior CAD among them
    assert steps["history_code"] == {
        "step": "history_code",
        "participants": 1,
        "excluded": 1,
        "remaining": n - 1,
        "policy": "exclude",
    }
    censored = steps["censored"]
    assert (censored["participants"], censored["excluded"], censored["remaining"], censored["policy"]) == (
        2,
        2,
        n - 3,
        "exclude",
    )
    assert censored["reasons"] == {
        "incomplete_followup": {"Wales": 1},
        "lost_to_followup": {"participants": 1, "by_190_reason": {"3 NHS says left the UK": 1}},
    }
    assert (steps["competing_death"]["participants"], steps["competing_death"]["excluded"]) == (1, 1)
    # cases: welsh_late_mi, lost_after_mi, mi_then_death, i252_after_mi, incident_mi
    assert steps["cases"]["participants"] == 5 == card["cases"]
    assert steps["controls"] == {
        "step": "controls",
        "participants": n - 4 - 5,
        "of_which_censored": 0,
        "of_which_competing_death": 0,
    }
    assert card["included"] == n - 4 and card["exclusions"] == {
        "competing_death": 1,
        "history_code": 1,
        "incomplete_followup": 1,
        "lost_to_followup": 1,
    }
    assert card["task"]["censor_dates"] == {"England": "2022-10-31", "Scotland": "2022-08-31", "Wales": "2018-02-28"}
    followup = card["followup"]  # how the included participants' follow-up ended
    assert (followup["participants"], followup["events"], followup["reached_horizon"]) == (n - 4, 5, n - 9)
    assert followup["competing_deaths"] == followup["censored_before_horizon"] == 0
    params = cohort_params(card)  # what a training run logs to MLflow
    assert params["cohort/read"] == n and params["cohort/censored"] == 2 and params["cohort/censored.excluded"] == 2
    assert params["cohort/cases"] == 5 and "cohort/cases.excluded" not in params

    kept = prepare(make_config(f"data.path={path}", "task.censoring=control")).card
    steps = {step["step"]: step for step in kept["cohort_steps"]}
    assert (steps["censored"]["participants"], steps["censored"]["excluded"]) == (2, 0)
    assert (
        steps["competing_death"]["participants"],
        steps["competing_death"]["excluded"],
        steps["competing_death"]["policy"],
    ) == (1, 0, "control")
    assert steps["controls"]["of_which_censored"] == 2 and steps["controls"]["of_which_competing_death"] == 1
    assert kept["included"] == n - 1
    assert (kept["followup"]["competing_deaths"], kept["followup"]["censored_before_horizon"]) == (1, 2)
    assert any(
        "2 censored before the horizon" in line
        for line in summary_lines(prepare(make_config(f"data.path={path}", "task.censoring=control")))
    )
