"""Evaluate a trained model on its prepared splits: score validation and test once, recalibrate on validation,
compare with the baselines on the same participants, write the report.

cadft-train calls this after training and cadft-eval on a saved run; both hand over the same pieces, so a saved
run evaluates to the same numbers.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import polars as pl
from omegaconf import DictConfig

from cadft import layout
from cadft.eval.comparison import compare_with_baselines
from cadft.eval.metrics import evaluate_scores
from cadft.eval.recalibration import Recalibrator, TrainingSample
from cadft.eval.report import write_report
from cadft.eval.score import score_texts
from cadft.eval.subgroups import SUBGROUP_COLUMNS

log = logging.getLogger(__name__)
NON_FEATURE_COLUMNS = ("eid", "label", "split", "text")


def evaluate_model(model, tokenizer, table: pl.DataFrame, cfg: DictConfig, out_dir: Path, *, device: str, train_rows: pl.DataFrame,
                   sample: TrainingSample | None, recalibrator: Recalibrator | None = None, card: dict | None = None) -> tuple[dict, dict]:
    """metrics.json, predictions.jsonl, plots and report.html in out_dir; returns (metrics, the baselines' metrics by name).
    `train_rows` are the records the model was trained on (the equal-terms baselines get exactly these);
    `recalibrator` is a saved one (else fitted on validation here)."""
    scored = {}
    for split in ("validation", "test"):
        rows = table.filter(pl.col("split") == split)
        probs = score_texts(model, tokenizer, rows["text"].to_list(), head_cfg=cfg.get("head"), batch_size=int(cfg.eval.batch_size),
                            max_length=int(cfg.train.max_length), device=device, desc=f"scoring {split}")
        scored[split] = subgroup_frame(rows).with_columns(pl.Series("prob", probs))
    metrics = evaluate_scores(scored["validation"], scored["test"], cfg.eval, seed=int(cfg.seed), model=model_name(cfg),
                              recalibrator=recalibrator, sample=sample)
    baselines = _baselines(table, cfg, train_rows, device)
    if baselines:
        metrics["comparison"] = compare_with_baselines(metrics, scored["test"], baselines, cfg.eval, seed=int(cfg.seed))
    context = {"title": f"cadft run: {model_name(cfg)} on {cfg.task.name}", "config": config_summary(cfg, train_rows),
               "data": card, "baselines": {name: baseline_metrics for name, (baseline_metrics, _) in baselines.items()}}
    write_report(out_dir, scored["validation"], scored["test"], metrics, curves={name: frame for name, (_, frame) in baselines.items()},
                 plots=bool(cfg.eval.plots), context=context)
    return metrics, context["baselines"]


def _baselines(table: pl.DataFrame, cfg: DictConfig, train_rows: pl.DataFrame, device: str) -> dict:
    from cadft.baselines import Terms, run_baselines
    from cadft.text import text_feature_names

    all_features = [c for c in table.columns if c not in NON_FEATURE_COLUMNS]
    which = list(cfg.baselines.which or [])
    if not all_features:  # seed-JSON records carry text only
        log.warning("no feature columns: the report has no classical baselines")
        return {}
    terms = Terms(text_feature_names(all_features, cfg.text.get("features")), all_features, train_rows["eid"].to_numpy())
    return run_baselines(table, terms, cfg, None, seed=int(cfg.seed), oracle_path=oracle_path_for(cfg), which=which, device=device)


def model_name(cfg: DictConfig) -> str:
    return f"{cfg.backbone.name} {cfg.model.name}"


def config_summary(cfg: DictConfig, train_rows: pl.DataFrame) -> dict[str, str]:
    """What a reader of the report needs to know about the run (the full config is config.yaml)."""
    return {
        "backbone": str(cfg.backbone.name), "strategy (model)": str(cfg.model.name), "head": str(cfg.get("head", {}).get("name", "classifier")), "imbalance": str(cfg.imbalance.method),
        "ZeRO": str(cfg.zero.stage or "none"), "task": f"{cfg.task.name}: {cfg.task.get('description', '')}",
        "text template": str(cfg.text.get("name", "seed_json")), "text features": ", ".join(cfg.text.get("features") or ["all data.features"]),
        "training records": f"{train_rows.height} ({int(train_rows['label'].sum())} cases; train.subsample={cfg.train.subsample})",
        "steps": f"max_steps={cfg.train.max_steps}, epochs={cfg.train.epochs}, batch {cfg.train.batch_size} x {cfg.train.gradient_accumulation_steps}",
        "learning rate": str(cfg.model.learning_rate), "recalibration": str(cfg.eval.recalibration),
        "threshold choice": str(cfg.eval.threshold), "seed": str(cfg.seed),
    }


def subgroup_frame(rows: pl.DataFrame) -> pl.DataFrame:
    """eid, label and the columns subgroups are cut by, where the prepared table has them."""
    return rows.select("eid", "label", *[c for c in SUBGROUP_COLUMNS if c in rows.columns])


def oracle_path_for(cfg: DictConfig) -> str | None:
    """The synthetic cohort's oracle file, when it exists and predicts this task's label (incident hard CAD
    for cadft-synth); None otherwise."""
    path = cfg.data.get("oracle_path")
    if not path or not Path(path).is_file() or cfg.data.get("oracle_task") != cfg.task.name:
        return None
    return str(path)


def artifact_files(out_dir: Path, *, include_eids: bool) -> list[Path]:
    """The report files to upload; without eids, predictions go up with the eid key removed."""
    files = sorted(p for p in out_dir.iterdir() if p.is_file())
    if include_eids:
        return files
    shareable = out_dir / layout.SHAREABLE_DIR
    shareable.mkdir(exist_ok=True)
    stripped = shareable / layout.PREDICTIONS_FILE
    with (out_dir / layout.PREDICTIONS_FILE).open() as src, stripped.open("w") as dst:
        for line in src:
            record = json.loads(line)
            record.pop("eid", None)
            dst.write(json.dumps(record, sort_keys=True) + "\n")
    return [p for p in files if p.name != layout.PREDICTIONS_FILE] + [stripped]
