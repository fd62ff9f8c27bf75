"""Evaluation report files: metrics.json, predictions.jsonl, the plots and report.html, written all-or-nothing.

Identical inputs give byte-identical metrics.json and predictions.jsonl: keys sorted, floats written as
Python's shortest round-trip repr (exact, platform-independent), rows sorted by split then eid, no timestamps.
predictions.jsonl has one line per participant of validation and test: eid (unless include_eids=False),
split, label, risk (the recalibrated probability: the number to report), raw_score (the model's probability
before recalibration) and flagged (risk >= the threshold chosen on validation); under task.censoring=ipcw also
ipcw_weight (the participant's weight in the binary-label metrics).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import polars as pl

from cadft.data.followup import WEIGHT
from cadft.errors import CadftError
from cadft.eval.html import write_html
from cadft.eval.metrics import recalibrated
from cadft.eval.plots import write_plots
from cadft.files import atomic_file, staging_dir
from cadft.layout import EXPLANATIONS_FILE, METRICS_FILE, PREDICTIONS_FILE, REPORT_FILE, RUN_RECORD, SHAREABLE_DIR

SCORED_SPLITS = ("validation", "test")
# Around a page's table of each participant's reasons (templates/explanations.html.j2): cut from shared copies.
PARTICIPANTS = ("<!-- cadft:participants -->", "<!-- /cadft:participants -->")


def write_report(
    out_dir,
    validation: pl.DataFrame,
    test: pl.DataFrame,
    metrics: dict,
    *,
    curves: Mapping[str, pl.DataFrame] | None = None,
    plots: bool = True,
    include_eids: bool = True,
    context: Mapping | None = None,
) -> dict[str, Path]:
    """Write the report into out_dir; returns name -> path (metrics, predictions, report, and the plots when asked).
    `curves` (name -> eid, label, prob as that model's risk) are drawn beside the model; `context` (config summary,
    data counts, baselines' metrics) goes into report.html.

    Every file is complete in a staging folder inside out_dir before the first one replaces its old version.
    """
    out_dir = Path(out_dir)
    frames = {"validation": validation, "test": test}
    lines = prediction_lines(frames, metrics, include_eids=include_eids)
    for split, split_lines in lines.items():
        if len(split_lines) != metrics[split]["n"]:
            raise CadftError(
                f"predictions.jsonl would have {len(split_lines)} {split} lines but metrics.json counts "
                f"n={metrics[split]['n']} {split} participants: the metrics were computed on other scores; "
                "nothing was written"
            )
    _check_curves(test, curves or {})
    contents = {
        METRICS_FILE: json.dumps(metrics, sort_keys=True, indent=2, allow_nan=False) + "\n",
        PREDICTIONS_FILE: "".join(lines["validation"] + lines["test"]),
    }
    with staging_dir(out_dir, prefix=".report-") as staging:  # same filesystem: the renames below are atomic
        for name, text in contents.items():
            (staging / name).write_text(text, encoding="utf-8")
        names = {"metrics": METRICS_FILE, "predictions": PREDICTIONS_FILE}
        if plots:
            names |= {key: path.name for key, path in write_plots(staging, test, metrics, curves).items()}
        names["report"] = write_html(
            staging / REPORT_FILE, metrics, {key: staging / name for key, name in names.items()}, context or {}
        ).name
        for name in names.values():
            os.replace(staging / name, out_dir / name)
    return {key: out_dir / name for key, name in names.items()}


def prediction_lines(frames: Mapping[str, pl.DataFrame], metrics: dict, *, include_eids: bool) -> dict[str, list[str]]:
    """split -> one JSON line per participant, sorted by eid."""
    threshold = float(metrics["threshold"]["value"])
    lines = {}
    for split in SCORED_SPLITS:
        frame = frames[split].sort("eid")
        prob = frame["prob"].cast(pl.Float64).to_numpy()
        if np.isnan(prob).any() or frame["label"].null_count():
            raise CadftError(f"{split} scores have missing labels or NaN probabilities; nothing was written")
        risk = recalibrated(metrics, prob)
        columns = {
            "label": frame["label"].cast(pl.Int64).to_list(),
            "risk": risk.tolist(),
            "raw_score": prob.tolist(),
            "flagged": (risk >= threshold).astype(int).tolist(),
        }
        if WEIGHT in frame.columns:
            columns[WEIGHT] = frame[WEIGHT].to_list()
        if include_eids:
            columns["eid"] = frame["eid"].cast(pl.Int64).to_list()
        lines[split] = [
            json.dumps(
                dict(zip(columns, values)) | {"split": split}, sort_keys=True, separators=(",", ":"), allow_nan=False
            )
            + "\n"
            for values in zip(*columns.values())
        ]
    return lines


def _check_curves(test: pl.DataFrame, curves: Mapping[str, pl.DataFrame]) -> None:
    """Reference curves must score exactly the test participants, with the same labels, to share the axes."""
    expected = test.select("eid", "label").sort("eid")
    for name, frame in curves.items():
        if {"eid", "label", "prob"} - set(frame.columns):
            raise CadftError(f"curve {name!r} lacks eid, label or prob")
        mine = frame.select("eid", pl.col("label").cast(expected["label"].dtype)).sort("eid")
        if mine.height != expected.height or not mine["eid"].equals(expected["eid"]):
            raise CadftError(
                f"curve {name!r} scores {mine.height} participants, not the {expected.height} test "
                "participants of the model"
            )
        if not mine["label"].equals(expected["label"]):
            raise CadftError(f"curve {name!r} has labels that differ from the model's test labels for the same eids")


def shareable_files(out_dir: Path, *, include_eids: bool) -> list[Path]:
    """The report files to upload to a tracking store. Without eids, what is per participant goes up without them
    (copies in out_dir/shareable/): predictions without the eid key, explanations with a participant number in place
    of the eid, and report pages without their table of each participant's reasons (between the PARTICIPANTS
    markers)."""
    files = sorted(p for p in out_dir.iterdir() if p.is_file() and p.name != RUN_RECORD)  # an evaluation's record
    if include_eids:
        return files
    strip = {PREDICTIONS_FILE: _predictions_without_eids, EXPLANATIONS_FILE: _explanations_without_eids}
    shared = []
    for path in files:
        if path.name in strip:
            shared.append(_stripped(path, out_dir, strip[path.name]))
        elif path.suffix == ".html" and PARTICIPANTS[0] in path.read_text(encoding="utf-8"):
            shared.append(_stripped(path, out_dir, _page_without_participants))
        else:
            shared.append(path)
    return shared


def _stripped(path: Path, out_dir: Path, write) -> Path:
    copy = out_dir / SHAREABLE_DIR / path.name
    with atomic_file(copy) as partial:
        write(path, partial)
    return copy


def _predictions_without_eids(src_path: Path, dst_path: Path) -> None:
    with src_path.open() as src, dst_path.open("w") as dst:
        for line in src:
            record = json.loads(line)
            record.pop("eid", None)
            dst.write(json.dumps(record, sort_keys=True) + "\n")


def _explanations_without_eids(src_path: Path, dst_path: Path) -> None:
    """Participants numbered in the order they were drawn (a random order), not by eid."""
    frame = pl.read_parquet(src_path)
    number = {eid: i + 1 for i, eid in enumerate(frame["eid"].unique(maintain_order=True).to_list())}
    participant = pl.col("eid").replace_strict(number, return_dtype=pl.Int64).alias("participant")
    frame.select(participant, pl.exclude("eid")).write_parquet(dst_path)


def _page_without_participants(src_path: Path, dst_path: Path) -> None:
    html = src_path.read_text(encoding="utf-8")
    begin, end = html.index(PARTICIPANTS[0]), html.index(PARTICIPANTS[1]) + len(PARTICIPANTS[1])
    note = '<p class="note">Each participant\'s reasons are kept where the run is (tracking.log_eids=false).</p>'
    dst_path.write_text(html[:begin] + note + html[end:], encoding="utf-8")
