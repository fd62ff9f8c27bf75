"""A run folder checked before it is applied (cadft predict, cadft eval, cadft explain): its model folder holds the
files the run saved (an adapter or weights, the tokenizer, the calibrator: their SHA-256 as recorded in
cadft_model.json by cadft.train.provenance), its calibrator's parameters are finite numbers, and its config says what
the model was trained on (task, features, text template, head, backbone, strategy). Any difference is one CadftError
(exit 2) before the model is loaded: an edited config.yaml, a calibrator from another run or with NaN parameters,
a deleted or replaced adapter would otherwise give other risks without a word.

A model saved before cadft recorded these (no "trained_on" in its cadft_model.json) is applied with a warning; a key
its record lacks (added to cadft since, e.g. head.question_first) is compared at the schema's default, what such a model
was trained with.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from cadft.config.schema import Config
from cadft.errors import CadftError
from cadft.files import file_digest
from cadft.layout import CALIBRATOR_FILE, CHECKPOINT_INFO
from cadft.tracking.names import flat_config
from cadft.train.checkpoints import WEIGHTS
from cadft.train.provenance import FILES, TRAINED_ON, VERSION_KEY, trained_on

log = logging.getLogger(__name__)
SHOWN = 80  # characters of a differing value shown in the message


def check_model(model_dir: Path, config: Config, *, label: str, config_source: str, record_dir: Path | None = None):
    """Refuse `model_dir` (with one line starting with `label`) unless its files are the ones saved and `config`
    (from `config_source`, e.g. "config.yaml") is what it was trained on. `record_dir`: the folder whose
    cadft_model.json says what the model was trained on, when not model_dir's own (a checkpoint: its run's model
    folder). Returns the calibrator saved with the model (cadft.eval.recalibration.Recalibrator), or None."""
    from cadft.eval.recalibration import Recalibrator

    model_dir = Path(model_dir)
    info = _info(model_dir, label)
    _check_files(model_dir, info, label)
    if not any((model_dir / name).is_file() for name in WEIGHTS):
        raise CadftError(
            f"{label}: {model_dir.name}/ has no adapter or model weights ({', '.join(WEIGHTS[:3])}, ...): the "
            "model folder is incomplete; restore it from a copy or train again"
        )
    recorded = info.get(TRAINED_ON)
    if recorded is None and record_dir is not None and (Path(record_dir) / CHECKPOINT_INFO).is_file():
        recorded = _info(Path(record_dir), label).get(TRAINED_ON)
    if recorded is None:
        log.warning(
            "%s: %s does not record what the model was trained on (saved by an older cadft): its config is not "
            "checked against it",
            label,
            model_dir / CHECKPOINT_INFO,
        )
    else:
        _check_config(recorded, config, label, config_source)
    calibrator = model_dir / CALIBRATOR_FILE
    return Recalibrator.load(calibrator) if calibrator.is_file() else None


def _info(model_dir: Path, label: str) -> dict:
    path = model_dir / CHECKPOINT_INFO
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise CadftError(f"{label}: {path} is missing: not a saved cadft model") from None
    except (OSError, ValueError) as err:
        raise CadftError(f"{label}: {path} is unreadable ({err})") from None
    if not isinstance(info, dict):
        raise CadftError(f"{label}: {path} is not a cadft model record")
    return info


def _check_files(model_dir: Path, info: dict, label: str) -> None:
    files = info.get(FILES)
    if files is None:
        return
    for name, digest in sorted(files.items()):
        path = model_dir / name
        shown = f"{model_dir.name}/{name}"
        if not path.is_file():
            raise CadftError(
                f"{label}: {shown} is missing (the run saved it with the model); restore the model folder from a "
                "copy or train again"
            )
        if file_digest(path) != digest:
            raise CadftError(
                f"{label}: {shown} is not the file the run saved (its SHA-256 differs from the one in "
                f"{CHECKPOINT_INFO}): it was edited or replaced; restore it from a copy or train again"
            )
    if (model_dir / CALIBRATOR_FILE).is_file() and CALIBRATOR_FILE not in files:
        raise CadftError(
            f"{label}: {model_dir.name}/{CALIBRATOR_FILE} was not saved by the run (its {CHECKPOINT_INFO} records "
            f"no calibrator): remove it and write the run's own with: cadft eval {model_dir.parent} --finish"
        )


def _check_config(recorded: dict, config: Config, label: str, config_source: str) -> None:
    expected = flat_config({k: v for k, v in recorded.items() if k != VERSION_KEY})
    actual = flat_config({k: v for k, v in trained_on(config).items() if k != VERSION_KEY})
    expected |= {key: _schema_default(config, key) for key in actual.keys() - expected.keys()}
    differing = sorted(key for key in expected.keys() | actual.keys() if expected.get(key) != actual.get(key))
    if not differing:
        return
    key = differing[0]
    more = f" (and {len(differing) - 1} more keys)" if len(differing) > 1 else ""
    raise CadftError(
        f"{label}: {config_source} does not match the model: {key} is {_shown(actual.get(key))} there but the "
        f"model was trained with {_shown(expected.get(key))}{more}; apply the run with the config it was trained "
        "with (restore config.yaml, drop the override) or train again"
    )


def _schema_default(config: Config, key: str):
    """The default the schema gives a dotted config key (None when it has none)."""
    *path, leaf = key.split(".")
    node = config
    for part in path:
        node = getattr(node, part, None)
    if not dataclasses.is_dataclass(node):
        return None
    field = next((f for f in dataclasses.fields(node) if f.name == leaf), None)
    return None if field is None or field.default is dataclasses.MISSING else field.default


def _shown(value) -> str:
    text = json.dumps(value) if value is not None else "absent"
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."
