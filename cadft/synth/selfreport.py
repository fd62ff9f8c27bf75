"""Touchscreen and interview answers at baseline: multi-answer fields 6150, 20002, 20004, 6153/6177 and
family history 20107/20110/20111, medications by name 20003, with UKB's special answers (-7 none of the above, -1 do
not know,
-3 prefer not to answer; -11/-13/-17 and -21/-23/-27 for the two family-history groups).

Most prevalent hard-CAD participants report it (6150 = 1, 20002 = 1075, 20004 = 1070/1095/1523); those
with no hospital record of it before baseline always do, so the simulated prevalence is what a
phenotyper finds. Angina (6150 = 2, 20002 = 1074) is reported by more people and is not hard CAD.
"""

from __future__ import annotations

import numpy as np

from cadft.synth.codelists import CodeList
from cadft.synth.cohort import Baseline, logistic
from cadft.synth.outcomes import MI, Prevalence
from cadft.synth.treatment import Treatment

VASCULAR = [1, 2, 3, 4, -7, -3]
ILLNESSES = [1065, 1066, 1074, 1075, 1076, 1081, 1111, 1138, 1220, 1222, 1223, 1226, 1465, 1473]
OPERATIONS = [1070, 1095, 1523, 1514, 1326, 1434, 1459]
MEDICATION = [1, 2, 3, 4, 5, -7, -1, -3]
STATINS = {
    1140861958: 0.7,
    1141146234: 0.2,
    1140888648: 0.05,
    1141192410: 0.05,
}  # coding 4: simvastatin, atorvastatin, ...
MEDICATION_CODES = [*STATINS, 1140868226, 1140879802, 1141194794, 1140860696, 1140879760, 1140884600, 1140883066,
                    1140865634, 1140864752, 1140871310]  # fmt: skip
FAMILY_GROUP_1 = [1, 2, 6, 8, 9, 10, 11, 12, -17, -11, -13]
FAMILY_GROUP_2 = [3, 4, 5, 13, 14, -27, -21, -23]
# Chance that a father / mother / sibling had each illness other than heart disease (coding 1010).
FAMILY_ILLNESSES = {
    2: (0.10, 0.13, 0.03), 8: (0.20, 0.27, 0.15), 9: (0.08, 0.08, 0.06), 6: (0.07, 0.05, 0.02),
    10: (0.05, 0.09, 0.005), 11: (0.02, 0.01, 0.005), 12: (0.02, 0.05, 0.06), 3: (0.08, 0.04, 0.02),
    4: (0.05, 0.05, 0.02), 5: (0.0, 0.07, 0.05), 13: (0.05, 0.0, 0.03), 14: (0.02, 0.05, 0.01),
}  # fmt: skip


def _answer(lst: CodeList, rng: np.random.Generator, mask: np.ndarray, code, chance=1.0) -> np.ndarray:
    got = mask & (rng.random(mask.size) < chance)
    lst.add(np.flatnonzero(got), code)
    return got


def record_self_reports(
    b: Baseline, t: Treatment, prevalence: Prevalence, prior_record: np.ndarray, cad_log_hazard: np.ndarray,
    rng: np.random.Generator,
) -> dict[int, CodeList]:  # fmt: skip
    n = b.n
    vascular, illness, operation = CodeList(VASCULAR, False), CodeList(ILLNESSES, False), CodeList(OPERATIONS, False)
    prevalent = prevalence.prevalent
    mi = prevalent & (prevalence.kind == MI)
    reports = prevalent & ((rng.random(n) < 0.85) | ~prior_record)
    risk_z = cad_log_hazard - cad_log_hazard.mean()
    angina = (prevalent & (rng.random(n) < 0.35)) | (rng.random(n) < logistic(risk_z - 3.9)) | b.angina

    heart_attack = _answer(vascular, rng, reports & mi, 1, chance=0.95)
    _answer(illness, rng, reports & mi & ~heart_attack, 1075)
    _answer(illness, rng, reports & mi & heart_attack, 1075, chance=0.75)
    revascularised = reports & (~mi | (rng.random(n) < 0.35))
    kind = rng.random(n)
    _answer(operation, rng, revascularised & (kind < 0.7), 1070)
    _answer(operation, rng, revascularised & (kind >= 0.7) & (kind < 0.9), 1095)
    _answer(operation, rng, revascularised & (kind >= 0.9), 1523)
    _answer(operation, rng, angina | prevalent, 1514, chance=0.3)

    angina_told = _answer(vascular, rng, angina, 2, chance=0.8)
    stroke = _answer(vascular, rng, np.ones(n, bool), 3, chance=0.015)
    high_bp = _answer(vascular, rng, np.ones(n, bool), 4, chance=np.where(t.bp_treated, 0.9, 0.07))
    none_of_above = ~(heart_attack | angina_told | stroke | high_bp)
    vascular.add(np.flatnonzero(none_of_above & (rng.random(n) < 0.996)), -7)
    vascular.add(np.flatnonzero(none_of_above & (rng.random(n) < 0.003)), -3)

    _answer(illness, rng, angina, 1074, chance=0.6)
    _answer(illness, rng, np.ones(n, bool), 1066, chance=0.01 + 0.1 * prevalent)
    _answer(illness, rng, np.ones(n, bool), 1065, chance=np.where(t.bp_treated, 0.85, 0.04))
    _answer(illness, rng, np.ones(n, bool), 1473, chance=np.where(t.lipid_lowering, 0.45, 0.03))
    diabetes_kind = rng.random(n)
    _answer(illness, rng, b.diabetes & t.insulin & (diabetes_kind < 0.3), 1222)
    _answer(illness, rng, b.diabetes & (diabetes_kind >= 0.3) & (diabetes_kind < 0.7), 1220)
    _answer(illness, rng, b.diabetes & (diabetes_kind >= 0.7), 1223)
    for code, chance in ((1076, 0.003), (1081, 0.012), (1111, 0.11), (1138, 0.05), (1465, 0.08)):
        _answer(illness, rng, np.ones(n, bool), code, chance=chance)
    _answer(illness, rng, np.ones(n, bool), 1226, chance=np.where(b.female, 0.08, 0.015))
    for code, chance in ((1326, 0.10), (1434, 0.02 + 0.002 * (b.age - 40)), (1459, 0.02)):
        _answer(operation, rng, np.ones(n, bool), code, chance=chance)

    lists = {6150: vascular, 20002: illness, 20004: operation}
    lists.update(_medication(b, t, rng))
    lists.update(_family_history(b, rng))
    lists[20003] = _medication_codes(b, t, prevalent | angina, rng)  # last: the answers above do not change with it
    return lists


def _medication_codes(b: Baseline, t: Treatment, heart: np.ndarray, rng: np.random.Generator) -> CodeList:
    """The verbal interview's medications (20003): the drugs behind 6153/6177's answers by name, aspirin (more with
    heart disease) and drugs unrelated to CAD."""
    n = b.n
    meds = CodeList(MEDICATION_CODES, False)
    statin = rng.choice(list(STATINS), size=n, p=list(STATINS.values()))
    meds.add(np.flatnonzero(t.lipid_lowering), statin[t.lipid_lowering])
    for code, chance in ((1140879802, 0.4), (1140860696, 0.3), (1141194794, 0.35), (1140879760, 0.2)):
        _answer(meds, rng, t.bp_treated, code, chance=chance)
    _answer(meds, rng, b.diabetes & ~t.insulin, 1140884600, chance=0.75)
    _answer(meds, rng, t.insulin, 1140883066)
    _answer(meds, rng, np.ones(n, bool), 1140868226, chance=np.where(heart, 0.7, 0.06 + 0.2 * t.lipid_lowering))
    for code, chance in ((1140865634, 0.07), (1140864752, 0.04), (1140871310, 0.05)):
        _answer(meds, rng, np.ones(n, bool), code, chance=chance)
    return meds


def _medication(b: Baseline, t: Treatment, rng: np.random.Generator) -> dict[int, CodeList]:
    """6153 is asked of women (with hormones), 6177 of men."""
    lists = {}
    for field, sex in ((6153, b.female), (6177, b.male)):
        meds = CodeList(MEDICATION, False)
        special = rng.random(b.n)
        answers = sex & (special >= 0.007)  # 0.2% no answer, 0.2% do not know, 0.3% prefer not to answer
        meds.add(np.flatnonzero(sex & (special >= 0.002) & (special < 0.004)), -1)
        meds.add(np.flatnonzero(sex & (special >= 0.004) & (special < 0.007)), -3)
        taking = [(1, t.lipid_lowering), (2, t.bp_treated), (3, t.insulin)]
        if field == 6153:
            taking += [(4, t.hrt), (5, t.oral_contraceptive & ~t.hrt)]
        for code, on in taking:
            meds.add(np.flatnonzero(answers & on), code)
        none = answers & ~np.logical_or.reduce([on for _, on in taking])
        meds.add(np.flatnonzero(none), -7)
        lists[field] = meds
    return lists


def _family_history(b: Baseline, rng: np.random.Generator) -> dict[int, CodeList]:
    lists = {}
    relatives = ((20107, 0, b.father_heart, np.ones(b.n, bool)), (20110, 1, b.mother_heart, np.ones(b.n, bool)),
                 (20111, 2, b.sibling_heart, b.has_siblings))  # fmt: skip
    for field, which, heart, asked in relatives:
        family = CodeList(FAMILY_GROUP_1 + FAMILY_GROUP_2, False)
        special = rng.random(b.n)
        asked = asked & (special >= 0.003)
        unknown = asked & (special < 0.045)  # adopted or out of touch: "do not know" for both groups
        declined = asked & ~unknown & (special < 0.05)
        answers = asked & ~unknown & ~declined
        family.add(np.flatnonzero(unknown), -11)
        family.add(np.flatnonzero(unknown), -21)
        family.add(np.flatnonzero(declined), -13)
        family.add(np.flatnonzero(declined), -23)
        for group, none_code in ((FAMILY_GROUP_1, -17), (FAMILY_GROUP_2, -27)):
            any_in_group = np.zeros(b.n, dtype=bool)
            for code in (c for c in group if c > 0):
                has = heart if code == 1 else rng.random(b.n) < FAMILY_ILLNESSES[code][which]
                family.add(np.flatnonzero(answers & has), code)
                any_in_group |= has
            family.add(np.flatnonzero(answers & ~any_in_group), none_code)
        lists[field] = family
    return lists
