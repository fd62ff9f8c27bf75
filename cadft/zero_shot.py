"""The zero-shot baseline (`baselines.which: [..., zero_shot]`): the untrained backbone asked the verbalizer's question
(cadft.head), its P(yes) / (P(yes) + P(no)) recalibrated on validation like every baseline. It shows what the model
knows before fine-tuning: the gain of training is the language model's row minus this one.

The prompt is the run's head when that is the verbalizer, else conf/head/verbalizer.yaml as shipped. The scores
are cached under paths.prepared_dir/zero_shot/, keyed by the backbone's files, the prompt, train.max_length, the
precision and the records scored, so the runs of a sweep (a learning curve) and a repeated demo score the backbone once.

It runs in fp32 by default (`baselines.zero_shot_dtype`): the untrained model's P(yes) / (P(yes) + P(no)) varies little
between people, and bf16 rounding reorders them (on an H200, SmolLM2-135M: Spearman 0.73 between bf16 and fp32
scores of the same 2,048 records, bench/gpu_throughput.py), which would understate what the model knows.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import polars as pl
from omegaconf import DictConfig, OmegaConf

from cadft.cli import CONF_DIR
from cadft.head import CLASSIFIER
from cadft.synth.write import atomic_file

VERBALIZER_CONFIG = Path(CONF_DIR) / "head" / "verbalizer.yaml"


def zero_shot_head(cfg: DictConfig) -> dict:
    head = cfg.get("head") or CLASSIFIER
    if head["name"] == "verbalizer":
        return OmegaConf.to_container(head, resolve=True) if isinstance(head, DictConfig) else dict(head)
    return OmegaConf.to_container(OmegaConf.load(VERBALIZER_CONFIG), resolve=True)


def zero_shot_scores(splits: dict[str, pl.DataFrame], cfg: DictConfig, device: str | None, score_frame):
    """(validation, test, info) of the untrained backbone on `device` (None: train.device); `score_frame(rows, probs)`
    builds each frame."""
    from cadft.backbone import load_tokenizer, resolve_backbone
    from cadft.eval.score import score_texts
    from cadft.model import zero_shot_model
    from cadft.trainer import resolve_device

    head = zero_shot_head(cfg)
    backbone = resolve_backbone(cfg.backbone, cfg.paths.cache_dir)
    max_length = int(cfg.train.max_length)
    dtype = str(cfg.baselines.zero_shot_dtype)
    cache = Path(cfg.paths.prepared_dir) / "zero_shot" / f"{_cache_key(backbone, head, max_length, dtype, splits)}.parquet"
    if cache.is_file():
        cached = pl.read_parquet(cache)
        frames = [score_frame(splits[name], cached.filter(pl.col("split") == name)["prob"].to_numpy()) for name in ("validation", "test")]
    else:
        device = device or resolve_device(cfg.train.device)
        tokenizer = load_tokenizer(cfg.backbone, cfg.paths.cache_dir)
        model = zero_shot_model(backbone, tokenizer, head, device=device, dtype=dtype,
                                trust_remote_code=bool(cfg.backbone.get("trust_remote_code", False)))
        frames = []
        for name in ("validation", "test"):
            probs = score_texts(model, tokenizer, splits[name]["text"].to_list(), head_cfg=head, batch_size=int(cfg.eval.batch_size),
                                max_length=max_length, device=device, desc=f"zero-shot {name}")
            frames.append(score_frame(splits[name], probs))
        with atomic_file(cache) as partial:
            pl.concat([frame.select(pl.lit(name).alias("split"), "prob") for name, frame in zip(("validation", "test"), frames)]).write_parquet(partial)
    info = {"name": "zero_shot", "fitted_on": "nothing (the untrained backbone, asked in its chat template)",
            "features": "the record text", "train_records": 0, "tuned": {"question": head["question"]}}
    return frames[0], frames[1], info


def _cache_key(backbone: str, head: dict, max_length: int, dtype: str, splits: dict[str, pl.DataFrame]) -> str:
    """What the scores depend on: the backbone's files (path, size, mtime), the prompt, the length cap, the precision
    and the records."""
    folder = Path(backbone)
    files = sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file()) if folder.is_dir() else backbone
    digest = hashlib.sha256(json.dumps([files, head, max_length, dtype], sort_keys=True).encode())
    for name in ("validation", "test"):
        digest.update(splits[name].select("eid", "text").write_csv().encode())
    return digest.hexdigest()[:24]

