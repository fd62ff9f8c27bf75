"""Small hand-written UK Biobank extracts for tests, in every layout cadft reads.

Written independently of cadft's synthetic generator, so reader tests do not check the code against
itself. A participant is a dict: field id -> value for single-valued fields, a list for multi-select
and array fields, and a list of (code, date) pairs for the hospital code fields 41270/41271/41272
(the dates go to 41280/41281/41282 in the same slots).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import polars as pl

from cadft.data.ukb.registry import load_registry

PAIRED = {41270: 41280, 41271: 41281, 41272: 41282}
WIDTH = {41270: 6, 41280: 6, 41271: 3, 41281: 3, 41272: 4, 41282: 4}  # narrow, real files are wider


def base_person(eid: int, *, sex: int = 1, baseline: str = "2008-06-15", age: int = 60) -> dict:
    """A participant with the features cadft's default config reads, and no outcome codes; assessed in Leeds
    (England)."""
    return {
        "eid": eid,
        31: sex,
        34: 2008 - age,
        53: baseline,
        54: 11010,
        21022: age,
        21003: age,
        21000: 1001,
        22189: -1.5,
        21001: 27.1,
        48: 94,
        4080: [141, 137],
        4079: [84, 82],
        20116: 0,
        20161: None,
        1558: 3,
        22032: 1,
        30690: 5.6,
        30760: 1.3,
        30780: 3.5,
        30870: 1.6,
        30750: 35.2,
        30740: 5.1,
        30710: 1.2,
        30790: 20.0,
        30720: 0.9,
        2443: 0,
        6153 if sex == 0 else 6177: [-7],
        6150: [-7],
        20107: [-17],
        20110: [-17],
        20111: [-17],
    }


def _slots(person: dict) -> dict[int, list]:
    """Every list-valued field of a person as its array slots (codes and their paired dates)."""
    slots: dict[int, list] = {}
    for fid, value in person.items():
        if fid in PAIRED:
            slots[fid] = [code for code, _ in value]
            slots[PAIRED[fid]] = [date for _, date in value]
        elif isinstance(value, list):
            slots[fid] = value
    return slots


# Outcome fields every extract carries, even when no test participant has a value in them.
ALWAYS = (41270, 41280, 41271, 41281, 41272, 41282, 40000, 40001, 40002, 190, 191, 20002, 20004, 6150, 6153, 6177)


def _fields(people: list[dict]) -> list[int]:
    used = [fid for p in people for fid in list(p) + [PAIRED[f] for f in p if f in PAIRED] if fid != "eid"]
    return sorted(set(used) | set(ALWAYS))


def _width(fid: int, people: list[dict]) -> int:
    registry = load_registry()
    used = max((len(_slots(p).get(fid, [])) for p in people), default=0)
    return max(WIDTH.get(fid, registry[fid].arrays if registry[fid].is_list else 1), used)


def write_showcase(path: Path, people: list[dict], *, tab: bool = False) -> Path:
    fields = _fields(people)
    widths = {fid: _width(fid, people) for fid in fields}
    name = (lambda f, a: f"f.{f}.0.{a}") if tab else (lambda f, a: f"{f}-0.{a}")
    header = ["f.eid" if tab else "eid"] + [name(f, a) for f in fields for a in range(widths[f])]
    missing = "NA" if tab else ""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t" if tab else ",", quoting=csv.QUOTE_MINIMAL if tab else csv.QUOTE_ALL)
        writer.writerow(header)
        for p in people:
            slots = _slots(p)
            row = [p["eid"]]
            for f in fields:
                values = slots.get(f, [p.get(f)])
                row += [
                    _plain(values[a]) if a < len(values) and values[a] is not None else missing
                    for a in range(widths[f])
                ]
            writer.writerow(row)
    return path


def write_rap(
    path: Path, people: list[dict], *, replace: bool = False, cell: str = "json", prefix: bool = False
) -> Path:
    registry = load_registry()
    fields = _fields(people)
    columns: dict[str, list] = {"participant.eid" if prefix else "eid": [p["eid"] for p in people]}
    for fid in fields:
        f = registry[fid]
        base = f"{'participant.' if prefix else ''}p{fid}" + ("_i0" if f.instanced else "")
        values = [_slots(p).get(fid, [p.get(fid)]) for p in people]
        if f.multi:
            columns[base] = [_cell([_label(f, v, replace) for v in vs if v is not None], cell) for vs in values]
        elif f.is_list:
            for a in range(_width(fid, people)):
                columns[f"{base}_a{a}"] = [_label(f, vs[a], replace) if a < len(vs) else None for vs in values]
        else:
            columns[base] = [_label(f, vs[0], replace) for vs in values]
    frame = pl.DataFrame({k: [None if v is None else str(v) for v in vs] for k, vs in columns.items()})
    frame.write_csv(path)
    return path


def write_parquet(path: Path, people: list[dict], *, naming: str = "showcase") -> Path:
    staging = path.with_suffix(".csv")
    (write_rap if naming == "rap" else write_showcase)(staging, people)
    pl.read_csv(staging, infer_schema=False).write_parquet(path)
    staging.unlink()
    return path


def _plain(value) -> str:
    return str(value)


def _label(field, value, replace: bool):
    if value is None or not replace:
        return value
    if field.type == "code":
        code = str(value)
        return f"{code[:3]}.{code[3:]} Description of {code}, with a comma" if len(code) > 3 else f"{code} Description"
    if field.type == "categorical":
        return field.labels.get(int(value), value)
    return value


def _cell(values: list, cell: str) -> str | None:
    if not values:
        return None
    return json.dumps([str(v) for v in values]) if cell == "json" else "|".join(str(v) for v in values)
