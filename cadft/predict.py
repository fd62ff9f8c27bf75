"""cadft-predict: apply a trained run to new participants: extract in, calibrated 10-year risk out.

    cadft-predict run=RUN_DIR data.path=EXTRACT out=risks.csv [data.format=auto|showcase|tab|rap|parquet]
                  [data.withdrawals=FILE] [task=NAME] [device=auto|cpu|cuda] [batch_size=N]

Reads any supported extract (only the columns of the run's features), builds each record's text exactly as the
run did (the run's saved config: data.features and the text template, not today's defaults), scores it with the
run's model and applies the calibrator saved with it (model/calibrator.json). Writes a CSV with eid, risk (the
recalibrated probability, the number to use), raw_score (the model's output before recalibration); written to a
temporary file and renamed, so a failure leaves nothing behind. Labels and outcome fields are not needed: these
are new people. Withdrawn participants are never scored: those in the run's withdrawals file (its
data.withdrawals, which must still be readable), those in `data.withdrawals=FILE` (UK Biobank's latest list; both
apply), and every negative eid.
`task=NAME`, when given, must be the run's task (a model for one outcome does not predict another).
Exit status 2 with one line for bad input: an unreadable run, a run without a calibrator, missing columns.
"""

from __future__ import annotations

import os
import sys
import tempfile
from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl
from omegaconf import DictConfig, OmegaConf

from cadft.cli import exit_on_user_error
from cadft.errors import CadftError
from cadft.layout import CALIBRATOR_FILE, CHECKPOINT_INFO, RunLayout

ARGUMENTS = {"run": "a training run dir", "data.path": "the extract to score", "out": "the CSV to write",
             "data.format": "auto | showcase | tab | rap | parquet", "data.withdrawals": "a file of withdrawn eids, one a line",
             "task": "the run's task name (a check)",
             "device": "auto | cpu | cuda", "batch_size": "records per scoring batch"}
REQUIRED = ("run", "data.path", "out")


class TrainedRun:
    """What applying a run needs: its saved config and calibrator (read first, cheaply, so bad input fails before the
    model loads), then its model and tokenizer."""

    def __init__(self, run_dir: Path, device_setting: str = "auto"):
        from cadft.eval.recalibration import Recalibrator

        layout = RunLayout(Path(run_dir))
        if not layout.config.is_file() or not (layout.model_dir / CHECKPOINT_INFO).is_file():
            raise CadftError(f"run={run_dir}: not a finished cadft training run (expected {layout.config.name} and "
                             f"{layout.model_dir.name}/{CHECKPOINT_INFO})")
        if not (layout.model_dir / CALIBRATOR_FILE).is_file():
            raise CadftError(f"run={run_dir}: {layout.model_dir.name}/{CALIBRATOR_FILE} is missing: the run was saved before "
                             f"recalibration existed or did not finish; run cadft-eval on it first")
        self.cfg: DictConfig = OmegaConf.load(layout.config)
        if self.cfg.data.get("format") == "seed_json":
            raise CadftError(f"run={run_dir}: trained on seed-JSON records, which carry no extract fields to rebuild text from")
        self.recalibrator = Recalibrator.load(layout.model_dir / CALIBRATOR_FILE)
        self.model_dir, self.device_setting = layout.model_dir, device_setting

    @cached_property
    def _scorer(self) -> tuple:
        from transformers import AutoTokenizer

        from cadft.model import load_model
        from cadft.trainer import resolve_device

        device = resolve_device(self.device_setting)
        return load_model(self.model_dir, device=device), AutoTokenizer.from_pretrained(self.model_dir), device

    def records(self, path: Path, fmt: str = "auto", withdrawals: Path | None = None) -> pl.DataFrame:
        """eid and text of every participant of an extract but the withdrawn (the run's data.withdrawals and
        `withdrawals`), built as the run built its records."""
        from cadft.prepare import records_from_extract

        data = OmegaConf.merge(self.cfg.data, {"path": str(path), "format": fmt})
        return records_from_extract(data, self.cfg.text, self.cfg.task, withdrawals)

    def predict(self, records: pl.DataFrame, batch_size: int | None = None) -> pl.DataFrame:
        """eid, risk, raw_score for records with eid and text."""
        from cadft.eval.score import score_texts

        model, tokenizer, device = self._scorer
        raw = score_texts(model, tokenizer, records["text"].to_list(), head_cfg=self.cfg.get("head"), batch_size=int(batch_size or self.cfg.eval.batch_size),
                          max_length=int(self.cfg.train.max_length), device=device, desc="scoring")
        return pl.DataFrame({"eid": records["eid"], "risk": self.recalibrator.apply(raw), "raw_score": np.asarray(raw, dtype=np.float64)})


def parse_arguments(argv: list[str]) -> dict[str, str]:
    """KEY=VALUE arguments, checked: unknown keys and missing required ones are one clear error."""
    import difflib

    values = {}
    for argument in argv:
        key, sep, value = argument.partition("=")
        if not sep:
            raise CadftError(f"{argument!r}: arguments are KEY=VALUE; keys: {', '.join(ARGUMENTS)}")
        if key not in ARGUMENTS:
            close = difflib.get_close_matches(key, ARGUMENTS, n=1)
            raise CadftError(f"{key}: unknown argument" + (f"; did you mean {close[0]}?" if close else "") + f" (allowed: {', '.join(ARGUMENTS)})")
        values[key] = value
    missing = [key for key in REQUIRED if not values.get(key)]
    if missing:
        raise CadftError(f"missing {', '.join(f'{key}=' for key in missing)}: {'; '.join(f'{k}: {ARGUMENTS[k]}' for k in missing)}")
    if values.get("device", "auto") not in ("auto", "cpu", "cuda"):
        raise CadftError(f"device={values['device']}; allowed: auto, cpu, cuda")
    if "batch_size" in values and (not values["batch_size"].isdigit() or int(values["batch_size"]) < 1):
        raise CadftError(f"batch_size={values['batch_size']}; must be a positive integer")
    return values


def write_csv(frame: pl.DataFrame, out: Path) -> Path:
    """All or nothing: a temporary file beside `out`, renamed when complete."""
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{out.name}-", dir=out.parent)
    os.close(handle)
    try:
        frame.write_csv(temporary)
        os.replace(temporary, out)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return out


@exit_on_user_error("cadft-predict")
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return
    args = parse_arguments(argv)
    out = Path(args["out"]).expanduser().resolve()
    if not Path(args["data.path"]).is_file():
        raise CadftError(f"data.path={args['data.path']}: no such file")
    if out.is_dir():
        raise CadftError(f"out={out} is a folder; give a file name such as risks.csv")
    trained = TrainedRun(Path(args["run"]).expanduser().resolve(), args.get("device", "auto"))
    if args.get("task") and args["task"] != trained.cfg.task.name:
        raise CadftError(f"task={args['task']}, but run={args['run']} predicts {trained.cfg.task.name} ({trained.cfg.task.get('description', '')})")
    withdrawals = Path(args["data.withdrawals"]).expanduser().resolve() if args.get("data.withdrawals") else None
    records = trained.records(Path(args["data.path"]).resolve(), args.get("data.format", "auto"), withdrawals)
    risks = trained.predict(records, int(args["batch_size"]) if "batch_size" in args else None)
    write_csv(risks, out)
    print(f"cadft-predict: {risks.height} participants scored by {args['run']} ({trained.cfg.task.name}; recalibration "
          f"{trained.recalibrator.method}); mean risk {risks['risk'].mean():.2%}; wrote {out}")


if __name__ == "__main__":
    main()
