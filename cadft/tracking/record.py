"""The run record (`mlflow_run.json` in a run dir): which MLflow run and store a run dir belongs to, so eval, resume
and sync find it, and where its offline record is."""

from __future__ import annotations

import json
from pathlib import Path

from cadft.files import write_text_atomic
from cadft.layout import RunLayout


def read_record(run_dir: Path) -> dict:
    path = RunLayout(run_dir).run_record
    return json.loads(path.read_text()) if path.is_file() else {}


def update_record(run_dir: Path, **fields) -> None:
    """Merge fields into the run dir's record; written whole or not at all."""
    write_text_atomic(RunLayout(run_dir).run_record, json.dumps(read_record(run_dir) | fields) + "\n")
