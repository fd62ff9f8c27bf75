"""cadft synth: layouts, codings, determinism, atomic writes, and outcome rates checked against the task
definition by phenotyping the written codes directly (small cohorts, so the file runs in seconds)."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from cadft.config import CONF_DIR
from cadft.data.ukb.centres import country_expr
from cadft.data.ukb.columns import parse_column
from cadft.data.ukb.registry import load_registry
from cadft.synth import hazards, write
from cadft.synth.codelists import code_tables
from cadft.synth.simulate import simulate
from cadft.synth.write import Layout, write_cohort
from tests.conftest import CADFT

HARD_CAD = yaml.safe_load((CONF_DIR / "task" / "hard_cad.yaml").read_text())
N = 4000
REGISTRY = load_registry()


@pytest.fixture(scope="module")
def sim():
    return simulate(N, seed=7)


@pytest.fixture(scope="module")
def files(sim, tmp_path_factory):
    """The same cohort in every layout."""
    folder = tmp_path_factory.mktemp("synth")
    layouts = {
        "showcase": Layout("showcase"),
        "tab": Layout("tab"),
        "rap_json": Layout("rap"),
        "rap_pipe": Layout("rap", multi_cell="pipe"),
        "rap_replace": Layout("rap", coding="replace"),
        "showcase_replace": Layout("showcase", coding="replace"),
        "parquet_rap": Layout("parquet", parquet_naming="rap"),
        "parquet_showcase": Layout("parquet"),
    }
    paths = {}
    for name, layout in layouts.items():
        paths[name] = folder / f"{name}.{layout.format if layout.format in ('parquet', 'tab') else 'csv'}"
        write_cohort(sim, paths[name], folder / f"{name}.oracle.csv", layout)
    return paths


def read_strings(path: Path) -> pl.DataFrame:
    if path.suffix == ".parquet":
        frame = pl.read_parquet(path)
        return frame.with_columns(
            pl.col(c).cast(pl.String) for c, t in frame.schema.items() if not isinstance(t, pl.List)
        )
    separator = "\t" if path.suffix == ".tab" else ","
    return pl.read_csv(path, infer_schema=False, separator=separator)


def to_code(field: int, value: str) -> str:
    """A REPLACE label back to the raw code ("I25.2 Old myocardial infarction" -> "I252", "Male" -> "1")."""
    spec = REGISTRY[field]
    if spec.coding in ("icd10", "icd9", "opcs4"):
        return value.split(" ", 1)[0].replace(".", "")
    if spec.coding is None:
        return value
    return str({label: code for code, label in spec.labels.items()}[value])


def cells(path: Path, naming: str, replace: bool = False, multi_cell: str = "json") -> pl.DataFrame:
    """Canonical content (eid, field, instance, slot, raw value) of an extract, after light parsing."""
    frame = read_strings(path)
    eid_name = "f.eid" if naming == "tab" else "eid"
    frame = frame.rename({eid_name: "eid"})
    keys = {name: key for name in frame.columns if (key := parse_column(name, naming)) is not None}
    multi = [name for name, key in keys.items() if key.array is None and REGISTRY[key.field].multi]
    single = [name for name in keys if name not in multi]
    where = pl.DataFrame(
        {
            "column": single,
            "field": [keys[c].field for c in single],
            "instance": [keys[c].instance or 0 for c in single],
            "slot": [keys[c].array or 0 for c in single],
        }
    )
    parts = [frame.select("eid", *single).unpivot(index="eid", variable_name="column").join(where, on="column")]
    for name in multi:
        rows = []
        for eid, value in frame.select("eid", name).iter_rows():
            if value is None or value == "":
                continue
            items = (
                value if isinstance(value, list) else json.loads(value) if multi_cell == "json" else value.split("|")
            )
            rows += [
                (eid, name, keys[name].field, keys[name].instance or 0, slot, str(item))
                for slot, item in enumerate(items)
            ]
        parts.append(
            pl.DataFrame(
                rows, schema=parts[0].select("eid", "column", "field", "instance", "slot", "value").schema, orient="row"
            )
        )
    content = pl.concat([p.select("eid", "field", "instance", "slot", "value") for p in parts])
    content = content.filter(pl.col("value").is_not_null() & ~pl.col("value").is_in(["", "NA"]))
    if replace:
        pairs = content.select("field", "value").unique()
        codes = [to_code(field, value) for field, value in pairs.iter_rows()]
        content = (
            content.join(pairs.with_columns(code=pl.Series(codes)), on=["field", "value"])
            .drop("value")
            .rename({"code": "value"})
        )
    return content.with_columns(pl.col("eid").cast(pl.String)).sort("eid", "field", "instance", "slot")


def phenotype(path: Path) -> pl.DataFrame:
    """Prevalent / incident hard CAD by conf/task/hard_cad.yaml, straight from a Showcase extract."""
    frame = read_strings(path).with_columns(pl.all().replace("", None))
    definition, horizon = HARD_CAD["definition"], HARD_CAD["horizon_years"]
    baseline = frame.select("eid", pl.col("53-0.0").str.to_date().alias("baseline"))
    events = []
    for code_field, system in ((41270, "icd10"), (41271, "icd9"), (41272, "opcs4")):
        date_field = REGISTRY[code_field].paired_with
        for k in range(REGISTRY[code_field].arrays):
            events.append(
                frame.select(
                    "eid", pl.col(f"{code_field}-0.{k}").alias("code"),
                    pl.col(f"{date_field}-0.{k}").str.to_date().alias("date"), pl.lit(system).alias("system"),
                )
            )  # fmt: skip
    for cause in ["40001-0.0"] + [f"40002-0.{k}" for k in range(REGISTRY[40002].arrays)]:
        events.append(
            frame.select(
                "eid",
                pl.col(cause).alias("code"),
                pl.col("40000-0.0").str.to_date().alias("date"),
                pl.lit("icd10").alias("system"),
            )
        )
    qualifies = pl.lit(False)
    for system in ("icd10", "icd9", "opcs4"):
        for prefix in definition[system]:
            qualifies = qualifies | ((pl.col("system") == system) & pl.col("code").str.starts_with(str(prefix)))
    undated = pl.col("date").is_null() | (pl.col("date") == dt.date(1900, 1, 1))
    per_person = (
        pl.concat(events)
        .drop_nulls("code")
        .filter(qualifies)
        .join(baseline, on="eid")
        .group_by("eid")
        .agg(
            undated.any().alias("undated"),
            (~undated & (pl.col("date") <= pl.col("baseline"))).any().alias("before"),
            pl.col("date").filter(~undated & (pl.col("date") > pl.col("baseline"))).min().alias("first_after"),
        )
    )
    self_report = pl.lit(False)
    for field, codes in definition["self_report"].items():
        for k in range(REGISTRY[field].arrays):
            self_report = self_report | pl.col(f"{field}-0.{k}").cast(pl.Int64).is_in(codes).fill_null(False)
    people = (
        frame.select("eid", self_report.alias("self_report"))
        .join(baseline, on="eid")
        .join(per_person, on="eid", how="left")
    )
    return people.select(
        pl.col("eid").cast(pl.Int64),
        (pl.col("self_report") | pl.col("before").fill_null(False)).alias("prevalent"),
        pl.col("undated").fill_null(False).alias("excluded"),
        (pl.col("first_after") <= pl.col("baseline").dt.offset_by(f"{horizon}y")).fill_null(False).alias("event"),
    ).with_columns(incident=~pl.col("prevalent") & ~pl.col("excluded") & pl.col("event"))


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path):
    for fmt in ("showcase", "parquet"):
        outputs = []
        for run, seed in enumerate((3, 3, 4)):
            path = tmp_path / f"{fmt}{run}.out"
            write_cohort(simulate(1500, seed), path, tmp_path / f"{fmt}{run}.oracle.csv", Layout(fmt))
            outputs.append((path.read_bytes(), (tmp_path / f"{fmt}{run}.oracle.csv").read_bytes()))
        assert outputs[0] == outputs[1]
        assert outputs[0][0] != outputs[2][0] and outputs[0][1] != outputs[2][1]


def test_showcase_header_has_every_field_at_full_width(files):
    header = files["showcase"].open().readline().rstrip("\n").replace('"', "").split(",")
    assert header[0] == "eid"
    for fid, spec in REGISTRY.items():
        slots = [c for c in header if c.startswith(f"{fid}-0.")]
        assert len(slots) == spec.arrays, fid
    widths = {41270: 259, 41280: 259, 41271: 47, 41281: 47, 41272: 126, 41282: 126, 20002: 34, 20004: 32}
    for fid, width in widths.items():
        assert f"{fid}-0.{width - 1}" in header and f"{fid}-0.{width}" not in header
    for repeat in ("53-1.0", "21003-1.0", "4080-1.0", "4080-1.1", "30690-1.0"):
        assert repeat in header


def test_every_registry_field_is_simulated(sim):
    assert {field for field, _ in sim.fields} == set(REGISTRY)
    assert {instance for _, instance in sim.fields} == {0, 1}


def test_rap_header_names(files):
    header = read_strings(files["rap_json"]).columns
    for name in ("eid", "p31", "p34", "p21022", "p53_i0", "p53_i1", "p21003_i0", "p4080_i0_a1", "p4080_i1_a1",
                 "p41270", "p41271", "p41272", "p41280_a0", "p41280_a258", "p41282_a125", "p6150_i0", "p6153_i0",
                 "p20107_i0", "p20002_i0_a33", "p40002_i0_a14", "p191"):  # fmt: skip
        assert name in header, name
    assert not any(re.match(r"p(41270|6150)_.*a\d", c) for c in header)


def test_oracle_is_separate_and_covers_everyone(files, sim):
    for path in files.values():
        assert not {"risk", "prevalent", "incident"} & set(read_strings(path).columns)
    oracle = pl.read_csv(files["showcase"].with_name("showcase.oracle.csv"))
    assert oracle.columns[:3] == ["eid", "prevalent", "risk"]
    assert oracle["eid"].to_list() == sim.eid.to_list()
    assert oracle.filter(pl.col("prevalent") == 1)["risk"].null_count() == oracle["prevalent"].sum()
    risk = oracle["risk"].drop_nulls()
    assert risk.min() > 0 and risk.max() < 1


def test_quoting_and_missing_conventions(files):
    showcase_line = files["showcase"].read_text().splitlines()[1]
    fields = showcase_line.split('","')
    assert showcase_line.startswith('"') and showcase_line.endswith('"') and '""' in showcase_line
    assert all('"' not in f.strip('"') for f in fields)
    tab_lines = files["tab"].read_text().splitlines()
    assert tab_lines[0].startswith("f.eid\tf.31.0.0\t") and "\tNA\t" in tab_lines[1] and '"' not in tab_lines[1]
    rap_lines = files["rap_json"].read_text().splitlines()
    assert ",," in rap_lines[1] and not rap_lines[1].startswith('"')
    assert re.search(r'"\[""[A-Z]\d+"",""[A-Z]\d+""', files["rap_json"].read_text())  # JSON cells are CSV-quoted


def test_dates_ages_and_ids_are_consistent(files):
    frame = read_strings(files["showcase"])
    eid = frame["eid"].cast(pl.Int64)
    assert eid.is_unique().all() and eid.min() >= 1_000_000 and eid.max() < 6_000_000
    baseline = frame["53-0.0"].str.to_date()
    assert baseline.min() >= dt.date(2006, 3, 1) and baseline.max() <= dt.date(2010, 10, 31)
    age = frame["21003-0.0"].cast(pl.Int64)
    assert (age == frame["21022-0.0"].cast(pl.Int64)).all() and age.min() >= 40 and age.max() <= 70
    assert age.mean() == pytest.approx(56.1, abs=0.6)
    gap = baseline.dt.year() - frame["34-0.0"].cast(pl.Int64) - age
    assert gap.is_in([0, 1]).all()
    assert frame["31-0.0"].cast(pl.Int64).mean() == pytest.approx(0.46, abs=0.03)
    repeat = frame["53-1.0"].replace("", None).drop_nulls()
    assert 0.07 < len(repeat) / N < 0.12 and repeat.str.to_date().min() > baseline.max()


def test_rap_multi_select_cells_in_json_and_pipe(files):
    json_frame, pipe_frame = read_strings(files["rap_json"]), read_strings(files["rap_pipe"])
    codes = json_frame["p41270"].replace("", None).drop_nulls()
    assert len(codes) > N // 3
    for cell in codes.head(200):
        items = json.loads(cell)
        assert items and all(re.fullmatch(r"[A-Z]\d{2,3}", c) for c in items)
    assert (pipe_frame["p41270"].replace("", None).drop_nulls().str.join("|") != "").all()
    assert not pipe_frame["p41270"].str.contains(r"[\[\]\"]").any()
    assert json_frame["p6150_i0"].replace("", None).drop_nulls().str.starts_with("[").all()
    # The k-th code pairs with p41280_a{k}: a date wherever there is a code (bar the rare undated slot).
    for row in json_frame.filter(pl.col("p41270") != "").head(300).iter_rows(named=True):
        items = json.loads(row["p41270"])
        dated = sum(row[f"p41280_a{k}"] not in ("", None) for k in range(len(items)))
        assert dated >= len(items) - 1 and row[f"p41280_a{len(items)}"] in ("", None)


def test_replace_coding_writes_labels(files):
    frame = read_strings(files["rap_replace"])
    assert set(frame["p31"].unique()) == {"Female", "Male"}
    assert frame["p20116_i0"].is_in(["Never", "Previous", "Current", "Prefer not to answer", ""]).all()
    assert frame["p6153_i0"].str.contains("Cholesterol lowering medication", literal=True).any()
    labels = [label for cell in frame["p41270"].replace("", None).drop_nulls() for label in json.loads(cell)]
    assert all(re.fullmatch(r"[A-Z]\d\d(\.\d)? \S.*", label) for label in labels)
    assert "I10 Essential (primary) hypertension" in labels
    opcs = [label for cell in frame["p41272"].replace("", None).drop_nulls() for label in json.loads(cell)]
    assert any(label.startswith("K75.") for label in opcs)
    showcase = read_strings(files["showcase_replace"])
    assert showcase["54-0.0"].is_in(list(REGISTRY[54].labels.values())).all()


def test_every_simulated_code_has_a_replace_label(sim):
    labels = code_tables()["labels"]
    for field, system in ((41270, "icd10"), (41271, "icd9"), (41272, "opcs4"), (40001, "icd10"), (40002, "icd10")):
        values = sim.fields[(field, 0)]
        values = values.explode() if isinstance(values.dtype, pl.List) else values
        assert set(values.drop_nulls()) <= set(labels[system]), field
    for field in (6150, 6153, 6177, 20002, 20004, 20107, 20110, 20111, 21000, 54, 1558, 22032, 20116, 2443):
        values = sim.fields[(field, 0)]
        values = values.explode() if isinstance(values.dtype, pl.List) else values
        assert set(values.drop_nulls()) <= set(REGISTRY[field].labels), field


def test_same_content_in_every_layout(files):
    reference = cells(files["showcase"], "showcase")
    assert reference.height > 40 * N
    for name, naming, options in (
        ("tab", "tab", {}),
        ("rap_json", "rap", {}),
        ("rap_pipe", "rap", {"multi_cell": "pipe"}),
        ("rap_replace", "rap", {"replace": True}),
        ("showcase_replace", "showcase", {"replace": True}),
        ("parquet_showcase", "showcase", {}),
        ("parquet_rap", "rap", {}),
    ):
        assert cells(files[name], naming, **options).equals(reference), name


def test_rates_by_the_task_definition_match_the_oracle(files):
    found = phenotype(files["showcase"])
    oracle = pl.read_csv(files["showcase"].with_name("showcase.oracle.csv"))
    both = found.join(oracle, on="eid", suffix="_oracle")
    assert 0.02 <= both["prevalent"].mean() <= 0.04
    assert (both["prevalent"] == (both["prevalent_oracle"] == 1)).mean() > 0.998
    at_risk = both.filter(~pl.col("prevalent") & ~pl.col("excluded"))
    assert 0.03 <= at_risk["incident"].mean() <= 0.05
    assert (at_risk["incident"] == (at_risk["incident_oracle"] == 1)).mean() > 0.998
    # Calibration: mean oracle risk equals the realised rate within sampling error.
    rate, mean_risk = at_risk["incident"].mean(), at_risk["risk"].mean()
    assert abs(rate - mean_risk) < 4 * np.sqrt(mean_risk * (1 - mean_risk) / at_risk.height)
    assert _auroc(at_risk["risk"].to_numpy(), at_risk["incident"].to_numpy()) > 0.7


def test_records_end_at_each_countrys_censor_date(sim):
    """Hospital, death and loss records stop at the country's date, which is conf/task/hard_cad.yaml's default censor
    date; late-recruited Welsh participants have under 10 years of follow-up (task.censoring matters on the demo)."""
    dates = {country: dt.date.fromisoformat(day) for country, day in hazards.RECORD_END.items()}
    assert dates == {country: dt.date.fromisoformat(day) for country, day in HARD_CAD["censor_dates"].items()}
    people = pl.DataFrame({"eid": sim.eid, "centre": sim.fields[(54, 0)], "baseline": sim.fields[(53, 0)]})
    people = people.with_columns(
        country_expr(pl.col("centre")).replace_strict(dates, return_dtype=pl.Date).alias("end")
    )
    last = pl.DataFrame(
        {
            "eid": sim.eid,
            **{str(f): sim.fields[(f, 0)].list.max() for f in (41280, 41281, 41282)},
            "40000": sim.fields[(40000, 0)],
            "191": sim.fields[(191, 0)],
        }
    )
    last = last.select("eid", pl.max_horizontal(pl.exclude("eid")).alias("last"))
    joined = people.join(last, on="eid").filter(pl.col("last").is_not_null())
    assert joined.height > N / 4 and (joined["last"] <= joined["end"]).all()
    welsh = people.filter(pl.col("centre").is_in([11003, 11022, 11023]))
    short = welsh.filter(pl.col("baseline").dt.offset_by("10y") > pl.col("end"))
    assert welsh.height > 50 and short.height > welsh.height / 3
    # the oracle's years at risk are cut there too (its risk is the ceiling for the label on that follow-up)
    baseline = np.array([np.datetime64("2009-09-01", "D").astype(np.int64)] * 2)
    years = hazards.years_at_risk(baseline, hazards.record_end_day(np.array([11022, 11010])))
    assert years[0] == pytest.approx((dt.date(2018, 2, 28) - dt.date(2009, 9, 1)).days / 365.25) and years[1] == 10.0
    lost = sim.fields[(190, 0)].drop_nulls()
    assert lost.len() == sim.fields[(191, 0)].drop_nulls().len() and lost.is_in([2, 3, 4, 5]).all()


def test_noise_codes_that_must_not_count(sim):
    icd10 = sim.fields[(41270, 0)].explode().drop_nulls()
    for code in ("I10", "I209", "I251", "R074", "I489", "K409", "E119", "J459", "K219", "M179", "N390", "Z955"):
        assert (icd10 == code).any(), code
    assert sim.fields[(41271, 0)].explode().drop_nulls().str.starts_with("410").any()
    assert sim.fields[(40000, 0)].drop_nulls().len() > 0.03 * N
    assert sim.fields[(191, 0)].drop_nulls().len() >= 1
    dates = pl.concat([sim.fields[(f, 0)].explode() for f in (41280, 41281, 41282)])
    codes = pl.concat([sim.fields[(f, 0)].explode() for f in (41270, 41271, 41272)])
    assert dates.is_null().sum() > codes.is_null().sum()  # a few slots with a code but no date
    assert (dates == dt.date(1900, 1, 1)).sum() > 0


def test_failed_write_leaves_nothing(sim, tmp_path, monkeypatch):
    monkeypatch.setattr(write, "CELLS_PER_CHUNK", 50_000)  # several chunks
    real_chunks = write._chunks

    def failing_chunks(*args):
        for i, chunk in enumerate(real_chunks(*args)):
            if i == 2:
                raise OSError("disk full")
            yield chunk

    monkeypatch.setattr(write, "_chunks", failing_chunks)
    for layout in (Layout("showcase"), Layout("parquet")):
        with pytest.raises(OSError, match="disk full"):
            write_cohort(sim, tmp_path / "cohort.out", tmp_path / "cohort.oracle.csv", layout)
        assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("alias", [False, True], ids=["front_door", "alias"])
def test_console_script(tmp_path, alias):
    """`cadft synth` (the front door) and its alias `cadft-synth` (where the scripts are installed)."""
    script = Path(sys.executable).with_name("cadft-synth")
    if alias and not script.exists():
        pytest.skip("the cadft-synth script is not installed next to this Python")
    command, prog = ([str(script)], "cadft-synth") if alias else ([*CADFT, "synth"], "cadft synth")
    out = tmp_path / "cohort.csv"
    result = subprocess.run(
        [*command, "--n", "800", "--seed", "1", "--format", "rap", "--coding", "replace", "--multi-cell", "pipe",
         "--out", str(out)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert str(out) in result.stdout and "cohort.oracle.csv" in result.stdout and "prevalent" in result.stdout
    assert read_strings(out).height == 800 and (tmp_path / "cohort.oracle.csv").exists()
    bad = subprocess.run([*command, "--format", "xlsx", "--out", str(out)], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr and f"{prog}: error: " in bad.stderr


def _auroc(score: np.ndarray, label: np.ndarray) -> float:
    order = np.argsort(score, kind="stable")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    positives = label.astype(bool)
    n1, n0 = positives.sum(), (~positives).sum()
    return (ranks[positives].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)
