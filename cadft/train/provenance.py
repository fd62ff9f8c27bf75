"""What a saved model was trained on, and the checksums of its files, kept in its cadft_model.json so that the model
cannot be applied with a config, calibrator or weights it was not saved with (cadft.predict.check).

cadft train writes, once the model is saved (`seal`):
- "trained_on": the task (its whole definition), the features (their specs), the text template and its settings (the
  features it writes, their titles and clinical categories), the head (the question before or after the record), the
  backbone, the strategy, whether the training records had their features in orders of their own
  (train.shuffle_feature_order) and the cadft version: everything that decides how a record becomes a score;
- "files": the SHA-256 of every file of the model folder (adapter or weights, tokenizer, training sample); the
  calibrator's is added when it is saved, after scoring (`record_file`).
Hashing reads each file once: ~1 s per GB. The Trainer's checkpoints carry no record of their own (their run's model
folder has it).
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

from cadft.config.schema import Config
from cadft.config.typecheck import plain
from cadft.files import file_digest, write_text_atomic, writing
from cadft.layout import CALIBRATOR_FILE, CHECKPOINT_INFO

TRAINED_ON = "trained_on"
FILES = "files"
VERSION_KEY = "cadft_version"  # recorded, not compared: a newer cadft applies an older run


def trained_on(config: Config) -> dict:
    """How a record becomes a score for this config (plain values, as JSON holds them)."""
    return {  # keyed as in the config, so a difference is named by its config key (data.features, head.name)
        "task": plain(config.task),
        "data": {"features": plain(config.data.features)},
        "text": plain(config.text),
        "head": plain(config.head),
        "backbone": plain(config.backbone),
        "model": {"name": config.model.name},
        "train": {"shuffle_feature_order": config.train.shuffle_feature_order},
        VERSION_KEY: cadft_version(),
    }


def seal(model_dir: Path, config: Config) -> None:
    """Add what the model was trained on and the checksums of every file in `model_dir` to its cadft_model.json."""
    info = read_info(model_dir)
    info[TRAINED_ON] = trained_on(config)
    info[FILES] = {path.name: file_digest(path) for path in _files(model_dir)}
    _write_info(model_dir, info)


def record_file(model_dir: Path, name: str) -> None:
    """Add (or update) one file's checksum, e.g. the calibrator saved after scoring."""
    info = read_info(model_dir)
    info[FILES] = (info.get(FILES) or {}) | {name: file_digest(Path(model_dir) / name)}
    _write_info(model_dir, info)


def save_calibrator(model_dir: Path, recalibration: dict) -> None:
    """The recalibration fitted on validation (metrics.json's `recalibration`), saved beside the model and recorded:
    by cadft train after scoring, and by `cadft eval RUN --finish` for a run stopped before that."""
    from cadft.eval.recalibration import Recalibrator

    with writing(Path(model_dir) / CALIBRATOR_FILE):
        Recalibrator(**recalibration).save(Path(model_dir) / CALIBRATOR_FILE)
        record_file(model_dir, CALIBRATOR_FILE)


def read_info(model_dir: Path) -> dict:
    return json.loads((Path(model_dir) / CHECKPOINT_INFO).read_text())


def cadft_version() -> str:
    try:
        return metadata.version("cadft")
    except metadata.PackageNotFoundError:  # run from a clone without installing it
        return "unknown"


def _files(model_dir: Path) -> list[Path]:
    return sorted(p for p in Path(model_dir).iterdir() if p.is_file() and p.name != CHECKPOINT_INFO)


def _write_info(model_dir: Path, info: dict) -> None:
    write_text_atomic(Path(model_dir) / CHECKPOINT_INFO, json.dumps(info, indent=2) + "\n")
