"""Evaluate a trained model on its prepared splits: score validation and test once, write the report."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from omegaconf import DictConfig

from cadft.eval.metrics import evaluate_scores, flatten_metrics
from cadft.eval.report import write_report
from cadft.eval.score import score_texts

SUBGROUP_COLUMNS = ("sex", "age")
SHAREABLE_DIR = "shareable"  # report files without eids, for tracking servers


def evaluate_model(model, tokenizer, table: pl.DataFrame, cfg: DictConfig, out_dir: Path, *, device: str) -> tuple[dict, dict]:
    """metrics.json, predictions.jsonl and plots in out_dir; returns (metrics, flat metrics for MLflow)."""
    scored = {}
    for split in ("validation", "test"):
        rows = table.filter(pl.col("split") == split)
        probs = score_texts(model, tokenizer, rows["text"].to_list(), batch_size=int(cfg.eval.batch_size),
                            max_length=int(cfg.train.max_length), device=device, desc=f"scoring {split}")
        scored[split] = subgroup_frame(rows).with_columns(pl.Series("prob", probs))
    metrics = evaluate_scores(scored["validation"], scored["test"], cfg.eval, seed=int(cfg.seed))
    curves = reference_curves(table, cfg)
    if curves:
        metrics["reference"] = {name: reference_metrics(frame) for name, frame in curves.items()}
    write_report(out_dir, scored["validation"], scored["test"], metrics, curves=curves, plots=bool(cfg.eval.plots))
    return metrics, flatten_metrics(metrics)


def reference_metrics(frame: pl.DataFrame) -> dict[str, float]:
    """Threshold-free metrics of a reference model (the oracle) on the same test participants."""
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    y, p = frame["label"].to_numpy(), frame["prob"].to_numpy()
    return {"auroc": float(roc_auc_score(y, p)), "auprc": float(average_precision_score(y, p)), "brier": float(brier_score_loss(y, p))}


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


def reference_curves(table: pl.DataFrame, cfg: DictConfig) -> dict[str, pl.DataFrame]:
    """The oracle's scores on the same test participants, drawn beside the model."""
    path = oracle_path_for(cfg)
    if path is None:
        return {}
    from cadft.baselines import oracle_scores

    return {"oracle": oracle_scores(table, path)[1]}


def artifact_files(out_dir: Path, *, include_eids: bool) -> list[Path]:
    """The report files to upload; without eids, predictions go up with the eid key removed."""
    files = sorted(p for p in out_dir.iterdir() if p.is_file())
    if include_eids:
        return files
    shareable = out_dir / SHAREABLE_DIR
    shareable.mkdir(exist_ok=True)
    stripped = shareable / "predictions.jsonl"
    with (out_dir / "predictions.jsonl").open() as src, stripped.open("w") as dst:
        for line in src:
            record = json.loads(line)
            record.pop("eid", None)
            dst.write(json.dumps(record, sort_keys=True) + "\n")
    return [p for p in files if p.name != "predictions.jsonl"] + [stripped]
