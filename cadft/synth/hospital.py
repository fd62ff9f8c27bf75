"""Hospital (41270-41282) and death (40000-40002) records, written the way UK Biobank writes them.

Hard-CAD events leave infarction codes (I21/I22/I24, ICD-9 410), revascularisation procedures
(OPCS-4 K40-K50, K75) around the event date, old-MI (I25.2) and graft (Z95.1) codes at later
admissions, and qualifying death causes. Background codes that never qualify (angina, I25.1, chest
pain, hypertension, diabetes, hernias, ...) come from codes.yaml, angina and chest pain rising with CAD risk.
Stable angina, peripheral vascular disease and rheumatoid arthritis, which raise the CAD hazard (hazards.py), are mostly
coded before baseline.
Nothing is recorded after death, loss to follow-up or the record end of the participant's country (hazards.RECORD_END);
ICD-10 starts in 1997, earlier
admissions of Scottish and Welsh participants are in ICD-9.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cadft.synth.codelists import NO_DAY, CodeList, code_tables
from cadft.synth.cohort import DAYS_PER_YEAR, SCOTLAND_WALES_CENTRES, Baseline
from cadft.synth.outcomes import MI, Outcomes, Prevalence

ICD10_START = np.datetime64("1997-04-01", "D").astype(np.int64)
ICD9_START = np.datetime64("1981-01-01", "D").astype(np.int64)

ACUTE_MI = {"I214": 45, "I219": 30, "I210": 10, "I211": 10, "I249": 3, "I248": 2}
FATAL_MI = {"I219": 60, "I214": 20, "I249": 10, "I210": 10}
STENT = {"K751": 45, "K753": 35, "K752": 10, "K754": 10}
BALLOON = {"K491": 75, "K492": 25}
BYPASS = {"K403": 35, "K402": 35, "K404": 15, "K401": 15}
MAMMARY = {"K453": 80, "K454": 20}


@dataclass
class HospitalRecords:
    icd10: CodeList
    icd9: CodeList
    opcs4: CodeList
    underlying_cause: np.ndarray  # 40001, "" where no death
    contributory: CodeList  # 40002
    prior_qualifying_record: np.ndarray  # a hard-CAD hospital code dated before baseline


def _pick(rng: np.random.Generator, weights: dict[str, float], size: int) -> np.ndarray:
    codes = np.array(list(weights))
    p = np.array(list(weights.values()), dtype=float)
    return codes[rng.choice(len(codes), size=size, p=p / p.sum())]


def _uniform_day(rng: np.random.Generator, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    return start + np.floor(rng.random(np.shape(start)) * (np.maximum(end - start, 0) + 1)).astype(np.int64)


class _Recorder:
    """Adds dated codes for some people, dropping entries outside each person's recorded window."""

    def __init__(self, b: Baseline, outcomes: Outcomes, rng: np.random.Generator):
        self.rng = rng
        self.end_day = outcomes.record_end_day
        self.scotland_wales = np.isin(b.centre, SCOTLAND_WALES_CENTRES)
        labels = code_tables()["labels"]
        self.icd10 = CodeList(sorted(labels["icd10"]), dated=True)
        self.icd9 = CodeList(sorted(labels["icd9"]), dated=True)
        self.opcs4 = CodeList(sorted(labels["opcs4"]), dated=True)

    def add(self, target: CodeList, people: np.ndarray, codes, days: np.ndarray, chance: float = 1.0) -> np.ndarray:
        """Record with probability `chance`; returns the mask of `people` that got the code."""
        days = np.broadcast_to(days, people.shape)
        ok = (days <= self.end_day[people]) & (self.rng.random(people.size) < chance)
        if target is self.icd9:
            ok &= self.scotland_wales[people] & (days >= ICD9_START) & (days < ICD10_START)
        else:
            ok &= days >= ICD10_START
        target.add(people[ok], codes if np.ndim(codes) == 0 else np.asarray(codes)[ok], days[ok])
        return ok

    def revascularise(self, people: np.ndarray, day: np.ndarray, bypass_share, balloon_share: float) -> None:
        """A PCI (stent, balloon or rarely laser) or a bypass operation on `day`, and its later Z95 code."""
        rng, n = self.rng, people.size
        bypass = rng.random(n) < bypass_share
        balloon = ~bypass & (rng.random(n) < balloon_share)
        laser = ~bypass & ~balloon & (rng.random(n) < 0.03)
        stent = ~bypass & ~balloon & ~laser
        self.add(self.opcs4, people[stent], _pick(rng, STENT, stent.sum()), day[stent])
        self.add(self.opcs4, people[balloon], _pick(rng, BALLOON, balloon.sum()), day[balloon])
        self.add(self.opcs4, people[laser], "K501", day[laser])
        self.add(self.opcs4, people[bypass], _pick(rng, BYPASS, bypass.sum()), day[bypass])
        self.add(self.opcs4, people[bypass], _pick(rng, MAMMARY, bypass.sum()), day[bypass], chance=0.8)
        later = day + rng.integers(60, 3000, n)
        self.add(self.icd10, people[bypass], "Z951", later[bypass], chance=0.6)
        self.add(self.icd10, people[~bypass], "Z955", later[~bypass], chance=0.4)


def record_hospital(
    b: Baseline, prevalence: Prevalence, outcomes: Outcomes, cad_log_hazard: np.ndarray, rng: np.random.Generator
) -> HospitalRecords:
    rec = _Recorder(b, outcomes, rng)
    prior = _prevalent_events(rec, b, prevalence)
    _events_after_baseline(rec, b, prevalence, outcomes)
    _background(rec, b, outcomes, cad_log_hazard)
    underlying, contributory = _deaths(rec, b, prevalence, outcomes)
    _history_conditions(rec, b)  # last: the records above do not change with it
    return HospitalRecords(rec.icd10, rec.icd9, rec.opcs4, underlying, contributory, prior)


def _prevalent_events(rec: _Recorder, b: Baseline, prevalence: Prevalence) -> np.ndarray:
    rng = rec.rng
    people = np.flatnonzero(prevalence.prevalent)
    day = prevalence.day[people]
    mi = prevalence.kind[people] == MI
    prior = np.zeros(b.n, dtype=bool)
    got = rec.add(rec.icd10, people[mi], _pick(rng, ACUTE_MI, mi.sum()), day[mi], chance=0.8)
    prior[people[mi][got]] = True
    got = rec.add(rec.icd9, people[mi], "4109", day[mi], chance=0.8)
    prior[people[mi][got]] = True
    # Revascularisation at the time of an infarction (a third of them) or instead of one.
    revasc = ~mi | (rng.random(people.size) < 0.35)
    revasc_day = day + np.where(mi, rng.integers(0, 60, people.size), 0)
    before = (revasc_day < b.baseline_day[people]) & (revasc_day >= ICD10_START)
    hospital = revasc & (rng.random(people.size) < 0.85)
    rec.revascularise(people[hospital], revasc_day[hospital], bypass_share=0.3, balloon_share=0.15)
    prior[people[hospital & before]] = True
    rec.add(rec.icd10, people[~mi], "I251", day[~mi], chance=0.85)
    # Later admissions code the history: old MI (a qualifying code) and coronary atheroma.
    later = np.maximum(day + rng.integers(60, 6000, people.size), ICD10_START + rng.integers(0, 4000, people.size))
    got = rec.add(rec.icd10, people[mi], "I252", later[mi], chance=0.55)
    prior[people[mi][got & (later[mi] <= b.baseline_day[people[mi]])]] = True
    rec.add(rec.icd9, people[mi], "4129", day[mi] + rng.integers(60, 3000, mi.sum()), chance=0.3)
    rec.add(rec.icd10, people, "I251", later + rng.integers(0, 500, people.size), chance=0.5)
    return prior


def _events_after_baseline(rec: _Recorder, b: Baseline, prevalence: Prevalence, outcomes: Outcomes) -> None:
    rng = rec.rng
    people = np.flatnonzero(outcomes.cad_day != NO_DAY)
    day = outcomes.cad_day[people]
    mi = outcomes.cad_kind[people] == MI
    fatal = outcomes.cad_fatal[people]
    survivor_mi = mi & ~fatal
    # A recurrence in someone with an earlier MI is often coded as a subsequent infarction (I22).
    subsequent = survivor_mi & prevalence.prevalent[people] & (rng.random(people.size) < 0.5)
    rec.add(rec.icd10, people[subsequent], "I229", day[subsequent])
    first = survivor_mi & ~subsequent
    rec.add(rec.icd10, people[first], _pick(rng, ACUTE_MI, first.sum()), day[first])
    # Half of the fatal infarctions reach hospital before death; the rest are known only from the death record.
    rec.add(rec.icd10, people[fatal], _pick(rng, ACUTE_MI, fatal.sum()), day[fatal], chance=0.5)

    pci_after_mi = survivor_mi & (rng.random(people.size) < 0.55)
    revasc_only = ~mi
    revasc = pci_after_mi | revasc_only
    revasc_day = day + np.where(revasc_only, 0, rng.integers(0, 8, people.size))
    bypass_share = np.where(revasc_only, 0.25, 0.12)[revasc]
    rec.revascularise(people[revasc], revasc_day[revasc], bypass_share=bypass_share, balloon_share=0.15)
    # Coronary atheroma at the event, angina and an angiogram in the months before a planned procedure.
    rec.add(rec.icd10, people[~fatal], "I251", day[~fatal], chance=0.7)
    before = day - rng.integers(0, 200, people.size)
    rec.add(
        rec.icd10,
        people[revasc_only],
        _pick(rng, {"I209": 70, "I200": 20, "I208": 10}, revasc_only.sum()),
        before[revasc_only],
        chance=0.6,
    )
    rec.add(rec.opcs4, people[revasc_only], "K634", before[revasc_only], chance=0.5)
    rec.add(
        rec.icd10,
        people[survivor_mi],
        "I252",
        day[survivor_mi] + rng.integers(60, 3000, survivor_mi.sum()),
        chance=0.35,
    )


def _background(rec: _Recorder, b: Baseline, outcomes: Outcomes, cad_log_hazard: np.ndarray) -> None:
    rng, n = rec.rng, b.n
    tables = code_tables()["background"]
    # Some people use hospitals far more than others; older people more.
    frailty = np.exp(rng.normal(-0.32, 0.8, n) + 0.04 * (b.age - 56.0))
    risk_z = cad_log_hazard - cad_log_hazard.mean()
    adult_day = b.birth_day + int(18 * DAYS_PER_YEAR)
    windows = {
        "icd10": (np.full(n, ICD10_START), outcomes.record_end_day, rec.icd10),
        "icd9": (np.maximum(ICD9_START, adult_day), np.full(n, ICD10_START - 1), rec.icd9),
        "opcs4": (np.full(n, ICD10_START), outcomes.record_end_day, rec.opcs4),
    }
    everyone = np.arange(n)
    for system, table in tables.items():
        start, end, target = windows[system]
        years = np.maximum(end - start, 0) / DAYS_PER_YEAR
        typical_years = 25.0 if system != "icd9" else 16.0
        for code, spec in table.items():
            slope = spec.get("risk", 0.0)
            multiplier = frailty * np.exp(slope * risk_z - 0.5 * slope**2 * risk_z.var())
            chance = -np.expm1(np.log1p(-spec["rate"]) * multiplier * years / typical_years)
            has = rng.random(n) < chance
            if "sex" in spec:
                has &= b.female if spec["sex"] == "female" else b.male
            rec.add(target, everyone[has], code, _uniform_day(rng, start[has], end[has]))


def _history_conditions(rec: _Recorder, b: Baseline) -> None:
    """Stable angina, peripheral vascular disease and rheumatoid arthritis (risk factors only the history shows): most
    people with one were admitted with it in the years before baseline, some only after."""
    rng = rec.rng
    for condition, code in ((b.angina, "I209"), (b.peripheral_vascular, "I739"), (b.rheumatoid, "M069")):
        people = np.flatnonzero(condition)
        before = b.baseline_day[people] - (rng.random(people.size) * 9 * DAYS_PER_YEAR).astype(np.int64)
        got = rec.add(rec.icd10, people, code, before, chance=0.7)
        after = b.baseline_day[people] + (rng.random(people.size) * 8 * DAYS_PER_YEAR).astype(np.int64)
        rec.add(rec.icd10, people[~got], code, after[~got], chance=0.6)


def _deaths(rec: _Recorder, b: Baseline, prevalence: Prevalence, outcomes: Outcomes) -> tuple[np.ndarray, CodeList]:
    rng, n = rec.rng, b.n
    tables = code_tables()["deaths"]
    dead = outcomes.death_day != NO_DAY
    fatal_cad = dead & outcomes.cad_fatal
    after_cad = dead & outcomes.death_after_cad
    other = dead & ~fatal_cad & ~after_cad
    underlying = np.full(n, "", dtype="<U5")
    underlying[fatal_cad] = _pick(rng, FATAL_MI, fatal_cad.sum())
    underlying[after_cad] = _pick(rng, {"I251": 50, "I259": 20, "I219": 30}, after_cad.sum())
    underlying[other] = _pick(rng, tables["underlying"], other.sum())

    contributory = CodeList(sorted(code_tables()["labels"]["icd10"]), dated=False)
    contributory.add(np.flatnonzero(fatal_cad & (rng.random(n) < 0.4)), "I251")
    had_mi = after_cad | (dead & prevalence.prevalent & (prevalence.kind == MI))
    contributory.add(np.flatnonzero(had_mi & (rng.random(n) < 0.4)), "I252")
    for _ in range(3):
        people = np.flatnonzero(dead & (rng.random(n) < 0.45))
        contributory.add(people, _pick(rng, tables["contributory"], people.size))
    return underlying, contributory
