"""Hand-checked hard-CAD edge cases: each participant, what happens to them, and why.

Baseline 2008-06-15, so the 10-year horizon ends 2018-06-15; everyone is assessed in Leeds (England: censor date
2022-10-31).
Default task policies: censoring=exclude, competing_death=control, history_policy=exclude.
Expected values: (hard_cad incident label or exclusion, hard_cad prevalent label, broad_chd incident label
or exclusion).
"""

from __future__ import annotations

from tests.extracts import base_person


def _with(eid: int, **changes) -> dict:
    person = base_person(eid)
    person.update({int(k[1:]): v for k, v in changes.items()})
    return person


EDGE_CASES = {
    # old MI (I25.2) dated before baseline: prevalent, so excluded from the incident analysis
    "old_mi_before_baseline": (
        _with(1000001, f41270=[("I252", "2003-02-01"), ("I10", "2001-01-01")]),
        "prevalent",
        1,
        "prevalent",
    ),
    # angina (I20) only, after baseline: not hard CAD; broad CHD incident case
    "angina_only": (_with(1000002, f41270=[("I209", "2012-03-04")]), 0, 0, 1),
    # CABG (OPCS-4 K40.1) after baseline within 10 years: incident hard CAD
    "cabg_after_baseline": (_with(1000003, f41272=[("K401", "2013-07-08")]), 1, 0, 1),
    # self-reported heart attack (20002 = 1075) at baseline: prevalent
    "self_report_1075": (_with(1000004, f20002=[1065, 1075]), "prevalent", 1, "prevalent"),
    # ICD-9 410 (acute MI, stored 4109) in 1995: prevalent
    "icd9_410": (_with(1000005, f41271=[("4109", "1995-05-05")]), "prevalent", 1, "prevalent"),
    # MI after the 10-year horizon: not a case within 10 years
    "mi_after_horizon": (_with(1000006, f41270=[("I219", "2019-01-01")]), 0, 0, 0),
    # death with underlying cause I21.9 as the first event, no hospital record: incident case
    "death_first_event": (_with(1000007, f40000="2011-11-11", f40001="I219"), 1, 0, 1),
    # death from another cause before a later MI code (a data error): follow-up ends at death, non-case
    "death_other_cause_first": (
        _with(1000008, f40000="2010-01-01", f40001="C349", f41270=[("I210", "2012-01-01")]),
        0,
        0,
        0,
    ),
    # qualifying code without a date: cannot be placed, excluded by default
    "undated_code": (_with(1000009, f41270=[("I214", None)]), "undated_event", "undated_event", "undated_event"),
    # qualifying code with the UKB placeholder date 1900-01-01: undated too
    "placeholder_date": (
        _with(1000010, f41270=[("I21", "1900-01-01")]),
        "undated_event",
        "undated_event",
        "undated_event",
    ),
    # lost to follow-up (191) before the horizon and before the MI: incomplete follow-up, excluded (censoring=exclude)
    "lost_before_event": (
        _with(1000011, f191="2010-02-02", f41270=[("I219", "2012-01-01")]),
        "lost_to_followup",
        0,
        "lost_to_followup",
    ),
    # noise codes only (hypertension, type 2 diabetes, reflux, chest pain)
    "noise_only": (
        _with(
            1000012,
            f41270=[("I10", "2009-01-01"), ("E119", "2010-01-01"), ("K219", "2011-01-01"), ("R074", "2012-01-01")],
        ),
        0,
        0,
        0,
    ),
    # MI on the baseline date itself: prevalent (on or before baseline)
    "mi_on_baseline_date": (_with(1000013, f41270=[("I219", "2008-06-15")]), "prevalent", 1, "prevalent"),
    # vascular problems (6150) = heart attack: prevalent; angina only (6150 = 2) would be broad CHD only
    "self_report_6150_heart_attack": (_with(1000014, f6150=[1, 4]), "prevalent", 1, "prevalent"),
    "self_report_6150_angina": (_with(1000015, f6150=[2]), 0, 0, "prevalent"),
    # chronic IHD (I25.1) after baseline: broad CHD only
    "i251_after_baseline": (_with(1000016, f41270=[("I251", "2014-02-02")]), 0, 0, 1),
    # PTCA self-report (20004 = 1070): prevalent
    "self_report_ptca": (_with(1000017, f20004=[1070]), "prevalent", 1, "prevalent"),
    # first MI after baseline but recorded in the 4th slot behind noise codes, plus a later CABG: incident
    "mi_in_later_slot": (
        _with(
            1000018,
            f41270=[("I10", "2007-01-01"), ("J459", "2009-01-01"), ("N390", "2010-01-01"), ("I211", "2016-09-09")],
            f41272=[("K401", "2016-09-20")],
        ),
        1,
        0,
        1,
    ),
    # a late-baseline participant whose follow-up ends at England's censor date 2022-10-31, before the horizon
    # (2023-01-10) and before the MI: incomplete follow-up, excluded (censoring=exclude)
    "censored_before_event": (
        {**_with(1000019, f41270=[("I219", "2022-12-01")]), 53: "2013-01-10"},
        "incomplete_followup",
        0,
        "incomplete_followup",
    ),
    # hospital Z95.1 (presence of CABG graft) first recorded after baseline: the graft may predate baseline, so the
    # participant is excluded (history_policy=exclude) from the incident and the prevalent analysis alike
    "z951_after_baseline": (
        _with(1000020, f41270=[("Z951", "2015-05-05")]),
        "history_code",
        "history_code",
        "history_code",
    ),
}


def people() -> list[dict]:
    return [case[0] for case in EDGE_CASES.values()]
