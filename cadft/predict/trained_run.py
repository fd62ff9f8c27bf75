"""A trained run, read to be applied to new people: its saved config and calibrator (read first, cheaply, so bad input
fails before the model loads), then its model and tokenizer; records are built from an extract exactly as the run
built its own (cadft.data.records), scored with the run's model, and the saved calibrator applied. Everything that
applies a saved run (cadft predict, cadft explain, the MLflow model) loads it here."""

from __future__ import annotations

from dataclasses import replace
from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl

from cadft.config.schema import Config
from cadft.config.validate import load
from cadft.errors import CadftError
from cadft.layout import CALIBRATOR_FILE, CHECKPOINT_INFO, RunLayout


class TrainedRun:
    """What applying a run needs: its saved config and calibrator (read first, cheaply, so bad input fails before the
    model loads), then its model and tokenizer."""

    def __init__(self, run_dir: Path, device_setting: str = "auto", overrides: list[str] = ()):
        """`overrides` (KEY=VALUE) change the saved config (cadft explain: data.path, explain.*)."""
        from cadft.predict.check import check_model

        layout = RunLayout(Path(run_dir))
        if not layout.config.is_file() or not (layout.model_dir / CHECKPOINT_INFO).is_file():
            raise CadftError(
                f"run={run_dir}: not a finished cadft training run (expected {layout.config.name} and "
                f"{layout.model_dir.name}/{CHECKPOINT_INFO})"
            )
        if not (layout.model_dir / CALIBRATOR_FILE).is_file():
            raise CadftError(
                f"run={run_dir}: {layout.model_dir.name}/{CALIBRATOR_FILE} is missing: the run stopped before it "
                f"was scored (or was saved before recalibration existed); finish it with: cadft eval {run_dir} --finish"
            )
        self.config: Config = load(layout.config, overrides)
        if self.config.data.format == "seed_json":
            raise CadftError(
                f"run={run_dir}: trained on seed-JSON records, which carry no extract fields to rebuild text from"
            )
        # the files the run saved, a finite calibrator, and the config the model was trained with
        self.recalibrator = check_model(
            layout.model_dir,
            self.config,
            label=f"run={run_dir}",
            config_source=layout.config.name + (" with the overrides" if overrides else ""),
        )
        self.run_dir, self.model_dir, self.device_setting = layout.root, layout.model_dir, device_setting

    @cached_property
    def _scorer(self) -> tuple:
        from transformers import AutoTokenizer

        from cadft.train.model import load_model
        from cadft.train.trainer import resolve_device

        device = resolve_device(self.device_setting)
        return load_model(self.model_dir, device=device), AutoTokenizer.from_pretrained(self.model_dir), device

    @property
    def device(self) -> str:
        return self._scorer[2]

    def record_table(self, path: Path, fmt: str = "auto", withdrawals: Path | None = None) -> pl.DataFrame:
        """eid, text and the columns it is written from (cadft.data.records.record_table) of every participant of an
        extract but the withdrawn (the run's data.withdrawals and `withdrawals`), built as the run built its records."""
        from cadft.data.records import record_table

        data = replace(self.config.data, path=str(path), format=fmt)
        return record_table(data, self.config.text, self.config.task, withdrawals)

    def score(self, texts: list[str] | pl.Series, batch_size: int | None = None, desc: str = "scoring") -> np.ndarray:
        """The model's P(label=1) of each text (before recalibration), scored as evaluation scores."""
        from cadft.eval.score import score_texts

        model, tokenizer, device = self._scorer
        return score_texts(
            model,
            tokenizer,
            texts,
            head=self.config.head,
            batch_size=batch_size or self.config.eval.batch_size,
            max_length=self.config.train.max_length,
            device=device,
            desc=desc,
            prefix_reuse=self.config.eval.prefix_reuse,
        )

    def predict(self, records: pl.DataFrame, batch_size: int | None = None) -> pl.DataFrame:
        """eid, risk, raw_score for records of record_table (eid, text and, for eval.test_time_orders > 1, the columns
        to write them in other orders), scored as the run scored its own (cadft.eval.score.score_records)."""
        from cadft.eval.score import score_records

        model, tokenizer, device = self._scorer
        config = replace(
            self.config, eval=replace(self.config.eval, batch_size=batch_size or self.config.eval.batch_size)
        )
        raw = score_records(model, tokenizer, records, config, device=device, desc="scoring")
        return pl.DataFrame(
            {
                "eid": records["eid"],
                "risk": self.recalibrator.apply(raw),
                "raw_score": np.asarray(raw, dtype=np.float64),
            }
        )
