"""cadft predict and the MLflow pyfunc model: a trained run applied to an extract reproduces its own test risks."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import mlflow
import pandas as pd
import polars as pl
import pytest

from cadft.cli.predict import parse_arguments
from cadft.errors import CadftError
from tests.conftest import CADFT


@pytest.fixture(scope="module")
def trained(tiny_run, synthetic_cohort):
    """The session's tiny run (its pyfunc model logged) and the extract it was trained on."""
    return tiny_run, synthetic_cohort[0]


def predict(*args: str, cwd: Path, umask: int = -1) -> subprocess.CompletedProcess:
    return subprocess.run([*CADFT, "predict", *args], capture_output=True, text=True, timeout=300, cwd=cwd, umask=umask)


def run_test_risks(run: Path) -> pl.DataFrame:
    rows = [json.loads(line) for line in (run / "eval" / "predictions.jsonl").read_text().splitlines()]
    return pl.DataFrame([r for r in rows if r["split"] == "test"]).select("eid", "risk", "raw_score")


def test_predict_reproduces_the_runs_test_risks(trained, tmp_path):
    run, extract = trained
    done = predict(f"run={run}", f"data.path={extract}", f"out={tmp_path / 'risks.csv'}", cwd=tmp_path, umask=0o007)
    assert done.returncode == 0, done.stderr[-2000:]
    assert stat.S_IMODE((tmp_path / "risks.csv").stat().st_mode) == 0o660  # the umask's modes, not mkstemp's 0600
    risks = pl.read_csv(tmp_path / "risks.csv")
    assert (
        risks.columns == ["eid", "risk", "raw_score"] and risks.height == 3000
    )  # every participant of the extract, labels unused
    joined = run_test_risks(run).join(risks, on="eid", suffix="_predicted")
    assert joined.height == run_test_risks(run).height
    assert (joined["risk"] - joined["risk_predicted"]).abs().max() < 1e-5
    assert (joined["raw_score"] - joined["raw_score_predicted"]).abs().max() < 1e-5
    assert "participants scored" in done.stdout


def test_the_pyfunc_model_gives_the_same_numbers(trained):
    run, extract = trained
    record = json.loads((run / "mlflow_run.json").read_text())
    mlflow.set_tracking_uri(record["tracking_uri"])
    model_uri = mlflow.get_run(record["run_id"]).data.tags["cadft.model_uri"]
    logged = mlflow.get_logged_model(model_uri.removeprefix("models:/"))  # in the run's experiment, not ./mlruns
    assert logged.experiment_id == mlflow.get_run(record["run_id"]).info.experiment_id
    assert not logged.artifact_location.startswith(Path.cwd().as_uri())
    model = mlflow.pyfunc.load_model(model_uri)
    expected = run_test_risks(run).head(200)
    rows = pd.read_csv(extract, dtype=str)
    rows = rows[rows["eid"].astype(int).isin(expected["eid"].to_list())]
    predicted = pl.from_pandas(model.predict(rows))
    joined = expected.join(predicted, on="eid", suffix="_pyfunc")
    assert joined.height == 200 and (joined["risk"] - joined["risk_pyfunc"]).abs().max() < 1e-5


def test_withdrawn_and_negative_eids_are_never_scored(trained, tmp_path):
    run, extract = trained
    rows = pl.read_csv(extract, infer_schema=False)
    eids = rows["eid"].cast(pl.Int64)
    negative = eids.head(4).to_list()
    changed = tmp_path / "extract.csv"
    rows.with_columns(
        pl.when(pl.col("eid").cast(pl.Int64).is_in(negative))
        .then("-" + pl.col("eid"))
        .otherwise(pl.col("eid"))
        .alias("eid")
    ).write_csv(changed, quote_style="always")
    withdrawals = tmp_path / "withdrawn.txt"
    withdrawn = eids.slice(10, 5).to_list()
    withdrawals.write_text("\n".join(map(str, withdrawn)) + "\n")
    done = predict(
        f"run={run}",
        f"data.path={changed}",
        f"data.withdrawals={withdrawals}",
        f"out={tmp_path / 'risks.csv'}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    scored = pl.read_csv(tmp_path / "risks.csv")["eid"]
    assert scored.len() == 3000 - 9 and scored.min() > 0 and not set(scored) & set(withdrawn)
    assert set(eids) - set(scored) == set(negative) | set(withdrawn)
    bad = tmp_path / "bad.txt"
    bad.write_text("12\nabc\n")
    done = predict(
        f"run={run}", f"data.path={changed}", f"data.withdrawals={bad}", f"out={tmp_path / 'other.csv'}", cwd=tmp_path
    )
    assert (
        done.returncode == 2
        and done.stderr.strip()
        == f"cadft predict: error: data.withdrawals={bad}: line 2: 'abc' is not an eid; "
        "the file has one integer eid a line"
    )


def test_bad_input_is_one_line_and_writes_nothing(trained, tmp_path):
    run, extract = trained
    out = tmp_path / "risks.csv"
    no_sbp = tmp_path / "no_sbp.csv"
    pl.read_csv(extract, infer_schema=False).drop(
        [c for c in pl.read_csv(extract, n_rows=0).columns if c.startswith(("4080-", "93-"))]
    ).write_csv(no_sbp, quote_style="always")
    cases = {
        "no such run": ([f"run={tmp_path}", f"data.path={extract}", f"out={out}"], "not a finished cadft training run"),
        "unknown key": (
            [f"run={run}", f"data.pth={extract}", f"out={out}"],
            "data.pth: unknown argument; did you mean data.path?",
        ),
        "missing column": ([f"run={run}", f"data.path={no_sbp}", f"out={out}"], "4080"),
        "another task": (
            [f"run={run}", f"data.path={extract}", f"out={out}", "task=broad_chd"],
            "predicts hard_cad_incident10",
        ),
        "missing out": ([f"run={run}", f"data.path={extract}"], "missing out="),
    }
    for name, (args, message) in cases.items():
        done = predict(*args, cwd=tmp_path)
        assert done.returncode == 2, (name, done.stderr[-1500:])
        assert message in done.stderr and "Traceback" not in done.stderr, (name, done.stderr[-1500:])
        assert len(done.stderr.strip().splitlines()) == 1, (name, done.stderr)
        assert not out.exists() and not list(tmp_path.glob(".risks.csv-*")), name
    (run / "model" / "calibrator.json").rename(tmp_path / "calibrator.json")
    try:
        done = predict(f"run={run}", f"data.path={extract}", f"out={out}", cwd=tmp_path)
        assert done.returncode == 2 and "calibrator.json is missing" in done.stderr
    finally:
        (tmp_path / "calibrator.json").rename(run / "model" / "calibrator.json")


def test_a_run_and_its_prepared_data_get_the_umasks_modes(trained):
    """Shared filesystems: nothing private (safetensors writes the adapter 0600; staging folders are made 0700)."""
    from cadft.files import umask

    run, _ = trained
    files, folders = 0o666 & ~umask(), 0o777 & ~umask()
    for path in [*(run / "model").iterdir(), *(run / "checkpoints").glob("checkpoint-*/*")]:
        assert stat.S_IMODE(path.stat().st_mode) == (folders if path.is_dir() else files), path
    prepared = Path(json.loads((run / "prepared.json").read_text())["table"])
    assert stat.S_IMODE(prepared.parent.stat().st_mode) == folders and stat.S_IMODE(prepared.stat().st_mode) == files


def test_predict_explain_gives_the_same_reasons_as_cadft_explain(trained, tiny_explanation, tmp_path):
    from cadft.explain.report import reasons_columns, top_reasons

    _, extract = trained
    _, out, _ = tiny_explanation
    explained = pl.read_parquet(out / "explanations.parquet")
    people = explained["eid"].unique(maintain_order=True).head(6)
    rows = pl.read_csv(extract, infer_schema=False)
    subset = tmp_path / "six.csv"
    rows.filter(pl.col("eid").cast(pl.Int64).is_in(people.implode())).write_csv(subset, quote_style="always")
    arguments = [f"run={trained[0]}", f"data.path={subset}"]
    done = predict(*arguments, f"out={tmp_path / 'risks.csv'}", "explain=true", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "top 3 reasons each" in done.stdout
    risks = pl.read_csv(tmp_path / "risks.csv")
    assert risks.columns == ["eid", "risk", "raw_score"] + [
        f"reason_{k}{suffix}" for k in (1, 2, 3) for suffix in ("", "_delta_risk")
    ]
    parts = json.loads((out / "explanations.json").read_text())["parts"]
    expected = reasons_columns(top_reasons(explained, parts, 3), people, 3)
    joined = expected.join(risks, on="eid", suffix="_predict")
    assert joined.height == 6 and joined["reason_1"].null_count() == 0
    for k in (1, 2, 3):
        assert joined[f"reason_{k}"].to_list() == joined[f"reason_{k}_predict"].to_list()
        difference = (joined[f"reason_{k}_delta_risk"] - joined[f"reason_{k}_delta_risk_predict"]).abs().max()
        assert difference is None or difference < 1e-6
    with pytest.raises(CadftError, match=r"^explain=yes; allowed: true, false$"):
        parse_arguments([*arguments, f"out={tmp_path / 'x.csv'}", "explain=yes"])
