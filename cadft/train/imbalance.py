"""Class imbalance (`imbalance=weighted|oversample|none`): loss weights and the training sampler.

- weighted: class-weighted cross-entropy; weights from training-split counts (inverse frequency,
  n / (2 n_c)) or given in config. The trainer normalises by the total weight of the whole
  accumulated batch, so gradient accumulation gives exactly the large-batch loss.
- oversample: each epoch draws as many examples as the training split has, with cases at
  `positive_fraction`, cycling through shuffled cases (no case repeats before every case was drawn).
  Only the training split is resampled.
- none: plain cross-entropy, every example once per epoch.
- task.censoring=ipcw composes with each: every example's loss is also multiplied by its IPCW weight (0 for a record
  censored before the horizon; cadft.data.ipcw), inverse-frequency class weights come from the weighted counts, and
  the trainer normalises by the summed product of both weights.

Every option shares one sampler that groups examples of similar length into batches (little padding)
and yields the same global order on every rank, so accelerate/DeepSpeed shard whole batches across
processes and no two ranks see the same draw in a step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cadft.config.schema import Imbalance
from cadft.errors import CadftError

MEGABATCH_BATCHES = 50  # batches sorted together by length: larger = less padding, less randomness


@dataclass(frozen=True)
class AppliedImbalance:
    """What the composed config applies, resolved against the training labels (logged with the run)."""

    method: str
    class_weights: tuple[float, float]
    positive_fraction: float | None

    def as_params(self) -> dict[str, str | float]:
        return {
            "imbalance.applied.method": self.method,
            "imbalance.applied.weight_control": round(self.class_weights[0], 6),
            "imbalance.applied.weight_case": round(self.class_weights[1], 6),
            "imbalance.applied.positive_fraction": "natural"
            if self.positive_fraction is None
            else self.positive_fraction,
        }


def resolve_imbalance(
    imbalance: Imbalance, train_labels: np.ndarray, example_weights: np.ndarray | None = None
) -> AppliedImbalance:
    """The imbalance group applied to the training labels (and their IPCW weights, task.censoring=ipcw)."""
    method = imbalance.method
    n_case = int(train_labels.sum())
    n = len(train_labels)
    if n == 0:
        raise CadftError("the training split is empty: check data.split.fractions and train.max_train_examples")
    if n_case in (0, n):
        raise CadftError(f"the training split has {n_case} cases among {n} examples: both classes are needed to train")
    if example_weights is not None:  # the weighted counts the loss sees
        n_case, n = float(example_weights @ train_labels), float(example_weights.sum())
    fraction = imbalance.positive_fraction if method == "oversample" else None
    weights = imbalance.class_weights
    if weights is None or method == "none":
        resolved = (1.0, 1.0)
    elif weights == "inverse_frequency":
        resolved = (n / (2 * (n - n_case)), n / (2 * n_case))
    else:
        resolved = (weights[0], weights[1])
    return AppliedImbalance(method, resolved, fraction)


class GroupedSampler(torch.utils.data.Sampler[int]):
    """Indices for one epoch: drawn per the imbalance method, then grouped into batches of similar length.

    The order depends only on (seed, epoch), so every rank computes the same sequence and the data
    loader's sharding gives each rank different whole batches.
    """

    def __init__(
        self,
        lengths: list[int],
        labels: np.ndarray,
        imbalance: AppliedImbalance,
        *,
        batch_size: int,
        world_size: int = 1,
        seed: int = 0,
    ):
        self.lengths = np.asarray(lengths)
        self.labels = np.asarray(labels)
        self.imbalance = imbalance
        self.batch_size = batch_size
        self.world_size = world_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        drawn = self._draw(rng)
        yield from self._group(drawn, rng).tolist()

    def _draw(self, rng: np.random.Generator) -> np.ndarray:
        n = len(self.lengths)
        if self.imbalance.method != "oversample":
            return rng.permutation(n)
        cases, controls = np.flatnonzero(self.labels == 1), np.flatnonzero(self.labels == 0)
        n_cases = round(self.imbalance.positive_fraction * n)
        drawn = np.concatenate([_cycle(cases, n_cases, rng), _cycle(controls, n - n_cases, rng)])
        return rng.permutation(drawn)

    def _group(self, drawn: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        step = self.batch_size * self.world_size  # one optimizer micro-step across all ranks
        mega = step * MEGABATCH_BATCHES
        batches = []
        for start in range(0, len(drawn), mega):
            chunk = drawn[start : start + mega]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches += [chunk[i : i + step] for i in range(0, len(chunk), step)]
        full = [b for b in batches if len(b) == step]
        partial = [b for b in batches if len(b) != step]
        # The tail (a partial step) stays last so every rank's batches stay aligned.
        steps = [full[i] for i in rng.permutation(len(full))] + partial
        _spread_duplicates(steps)
        return np.concatenate(steps) if steps else drawn


def _spread_duplicates(steps: list[np.ndarray]) -> None:
    """Oversampled copies of one case share its length, so sorting puts them side by side: swap each repeat
    with a participant of another step that holds neither (later steps first, then earlier ones, which the last
    steps need), so no step (all ranks' batches together) holds anyone twice while that is possible."""
    for i, step in enumerate(steps):
        members = set(step.tolist())
        if len(members) == len(step):
            continue
        seen: set[int] = set()
        for pos, index in enumerate(step.tolist()):
            if index not in seen:
                seen.add(index)
                continue
            for other in steps[i + 1 :] + steps[:i]:
                candidates = np.flatnonzero(~np.isin(other, list(members)))
                if index not in other and len(candidates):
                    k = candidates[0]
                    step[pos], other[k] = other[k], index
                    members.add(int(step[pos]))
                    seen.add(int(step[pos]))
                    break


def _cycle(pool: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` draws from `pool`: whole shuffled passes, so nothing repeats before everything was drawn once."""
    if count <= 0 or len(pool) == 0:
        return np.empty(0, dtype=np.int64)
    passes = -(-count // len(pool))
    return np.concatenate([rng.permutation(pool) for _ in range(passes)])[:count]


def weighted_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, example_weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example losses in fp32: (class weight * IPCW weight (when given) * CE, CE)."""
    losses = torch.nn.functional.cross_entropy(logits.float(), labels, reduction="none")
    return example_loss_weights(weights, labels, example_weights).to(losses.device) * losses, losses


def example_loss_weights(
    class_weights: torch.Tensor, labels: torch.Tensor, example_weights: torch.Tensor | None
) -> torch.Tensor:
    """Each example's weight in the loss: its class weight, times its IPCW weight under task.censoring=ipcw."""
    weights = class_weights.to(labels.device)[labels]
    return weights if example_weights is None else weights * example_weights.to(weights.device, torch.float32)
