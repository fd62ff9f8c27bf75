"""Training checkpoints that are whole or absent, and the last whole one to resume from.

CadftTrainer writes checkpoint-N into `<checkpoints>/.staging/checkpoint-N` (the Trainer's files, every rank's
shards, cadft_model.json, trainer_state.json last) and renames it to `<checkpoints>/checkpoint-N` when it is
complete, so a run killed while saving leaves a staging folder, never a half-written checkpoint-N. Resume still
checks each checkpoint's files (a disk can lose them later, an older cadft wrote them in place) and skips,
with a warning naming it, any that is incomplete.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from cadft.errors import CadftError
from cadft.layout import CHECKPOINT_INFO

log = logging.getLogger(__name__)
STAGING_DIR = ".staging"  # under the checkpoints folder: a checkpoint being written
CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")  # the Trainer's PREFIX_CHECKPOINT_DIR-<global step>
TRAINER_STATE = "trainer_state.json"
# Any one of these holds the trained weights: an adapter (lora, qlora) or the whole model (full), maybe sharded.
WEIGHTS = (
    "adapter_model.safetensors",
    "adapter_model.bin",
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# The optimizer state: the Trainer's file, or DeepSpeed's `latest` tag naming its global_stepN folder.
OPTIMIZER = ("optimizer.pt", "latest")


def missing_part(folder: Path) -> str | None:
    """What a checkpoint folder lacks to resume from it; None when it is complete."""
    for name in (TRAINER_STATE, CHECKPOINT_INFO):
        if not (folder / name).is_file():
            return f"no {name}"
    if not any((folder / name).is_file() for name in WEIGHTS):
        return "no weights (" + " or ".join(WEIGHTS[:3]) + ")"
    if not any((folder / name).is_file() for name in OPTIMIZER):
        return "no optimizer state (optimizer.pt or DeepSpeed's latest)"
    return None


def last_complete(folder: Path) -> Path:
    """The complete checkpoint with the highest step under folder; warns about each incomplete one skipped."""
    found = (
        sorted(
            (int(m.group(1)), path)
            for path in folder.glob("checkpoint-*")
            if path.is_dir() and (m := CHECKPOINT_NAME.match(path.name))
        )
        if folder.is_dir()
        else []
    )
    if not found:
        raise CadftError(
            f"train.resume=true but there is no checkpoint under {folder}; pass the earlier run's dir as "
            "hydra.run.dir=DIR"
        )
    staging = folder / STAGING_DIR
    for leftover in sorted(staging.iterdir()) if staging.is_dir() else []:
        log.warning("skipping %s: a checkpoint left half-written by a run that stopped while saving it", leftover)
    skipped = []
    for _, path in reversed(found):
        problem = missing_part(path)
        if problem is None:
            return path
        log.warning("skipping incomplete checkpoint %s (%s)", path, problem)
        skipped.append(f"{path.name}: {problem}")
    raise CadftError(
        f"train.resume=true but no checkpoint under {folder} is complete ({'; '.join(skipped)}); "
        "start a new run (another hydra.run.dir)"
    )
