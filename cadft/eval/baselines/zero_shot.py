"""The zero-shot baseline (`baselines.which: [..., zero_shot]`): the untrained backbone asked the verbalizer's question
(cadft.train.head), its P(yes) / (P(yes) + P(no)) recalibrated on validation like every baseline. It shows what
the model knows before fine-tuning: the gain of training is the language model's row minus this one.

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

from cadft.config import CONF_DIR
from cadft.config.schema import Config, HeadVerbalizer
from cadft.config.typecheck import plain
from cadft.config.validate import load_group_file
from cadft.eval.baselines.common import score_frame
from cadft.files import atomic_file

VERBALIZER_CONFIG = CONF_DIR / "head" / "verbalizer.yaml"


def zero_shot_head(config: Config) -> HeadVerbalizer:
    """The run's head when it is the verbalizer, else the shipped verbalizer's."""
    return config.head if isinstance(config.head, HeadVerbalizer) else load_group_file(VERBALIZER_CONFIG, "head")


def zero_shot_scores(splits: dict[str, pl.DataFrame], config: Config, device: str | None):
    """(validation, test, info) of the untrained backbone on `device` (None: train.device)."""
    from cadft.eval.score import score_texts
    from cadft.train.backbone import load_tokenizer, resolve_backbone
    from cadft.train.model import zero_shot_model
    from cadft.train.trainer import resolve_device

    head = zero_shot_head(config)
    backbone = resolve_backbone(config.backbone, config.paths.cache_dir)
    max_length = config.train.max_length
    dtype = config.baselines.zero_shot_dtype
    cache = (
        Path(config.paths.prepared_dir)
        / "zero_shot"
        / f"{_cache_key(backbone, plain(head), max_length, dtype, splits)}.parquet"
    )
    if cache.is_file():
        cached = pl.read_parquet(cache)
        frames = [
            score_frame(splits[name], cached.filter(pl.col("split") == name)["prob"].to_numpy())
            for name in ("validation", "test")
        ]
    else:
        device = device or resolve_device(config.train.device)
        tokenizer = load_tokenizer(config.backbone, config.paths.cache_dir)
        model = zero_shot_model(
            backbone, tokenizer, head, device=device, dtype=dtype, trust_remote_code=config.backbone.trust_remote_code
        )
        frames = []
        for name in ("validation", "test"):
            probs = score_texts(
                model,
                tokenizer,
                splits[name]["text"].to_list(),
                head=head,
                batch_size=config.eval.batch_size,
                max_length=max_length,
                device=device,
                desc=f"zero-shot {name}",
                prefix_reuse=config.eval.prefix_reuse,
            )
            frames.append(score_frame(splits[name], probs))
        with atomic_file(cache) as partial:
            pl.concat(
                [
                    frame.select(pl.lit(name).alias("split"), "prob")
                    for name, frame in zip(("validation", "test"), frames)
                ]
            ).write_parquet(partial)
    info = {
        "name": "zero_shot",
        "fitted_on": "nothing (the untrained backbone, asked in its chat template)",
        "features": "the record text",
        "train_records": 0,
        "tuned": {"question": head.question},
    }
    return frames[0], frames[1], info


def _cache_key(backbone: str, head: dict, max_length: int, dtype: str, splits: dict[str, pl.DataFrame]) -> str:
    """What the scores depend on: the backbone's files (path, size, mtime), the prompt, the length cap, the precision
    and the records."""
    folder = Path(backbone)
    files = (
        sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file())
        if folder.is_dir()
        else backbone
    )
    digest = hashlib.sha256(json.dumps([files, head, max_length, dtype], sort_keys=True).encode())
    for name in ("validation", "test"):
        digest.update(splits[name].select("eid", "text").write_csv().encode())
    return digest.hexdigest()[:24]
