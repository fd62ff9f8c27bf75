"""Evaluate a trained model on its prepared splits: score validation and test once, recalibrate on validation,
compare with the baselines on the same participants, write the report.

cadft train calls this after training and cadft eval on a saved run; both hand over the same pieces, so a saved
run evaluates to the same numbers.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import polars as pl

from cadft.config.schema import Config
from cadft.data.followup import FOLLOWUP_COLUMNS
from cadft.data.prepare import feature_columns
from cadft.eval.baselines.run import run_baselines, terms_for_run
from cadft.eval.comparison import compare_with_baselines
from cadft.eval.metrics import evaluate_scores
from cadft.eval.recalibration import Recalibrator, TrainingSample
from cadft.eval.report import write_report
from cadft.eval.score import score_records, score_texts
from cadft.eval.subgroups import SUBGROUP_COLUMNS
from cadft.eval.survival import training_censoring

log = logging.getLogger(__name__)


def evaluate_model(
    model,
    tokenizer,
    table: pl.DataFrame,
    config: Config,
    out_dir: Path,
    *,
    device: str,
    train_rows: pl.DataFrame,
    sample: TrainingSample | None,
    recalibrator: Recalibrator | None = None,
    card: dict | None = None,
) -> tuple[dict, dict]:
    """metrics.json, predictions.jsonl, plots and report.html in out_dir; returns (metrics, the baselines' metrics by
    name).
    `train_rows` are the records the model was trained on (the equal-terms baselines get exactly these);
    `recalibrator` is a saved one (else fitted on validation here)."""
    scored = {}
    for split in ("validation", "test"):
        rows = table.filter(pl.col("split") == split)
        probs = score_records(model, tokenizer, rows, config, device=device, desc=f"scoring {split}")
        scored[split] = subgroup_frame(rows).with_columns(pl.Series("prob", probs))
    metrics = evaluate_scores(
        scored["validation"],
        scored["test"],
        config.eval,
        seed=config.seed,
        model=model_name(config),
        recalibrator=recalibrator,
        sample=sample,
        censoring=training_censoring(table, config.task.horizon_years),
    )
    baselines = _baselines(table, config, train_rows, device, (scored["validation"], scored["test"]))
    if baselines:
        metrics["comparison"] = compare_with_baselines(
            metrics, scored["test"], baselines, config.eval, seed=config.seed
        )
    incremental = {name: b["incremental"] for name, (b, _) in baselines.items() if "incremental" in b}
    if incremental:  # what the language model adds to a clinical model (cadft.eval.baselines.incremental)
        metrics["incremental"] = incremental
    context = {
        "title": f"cadft run: {model_name(config)} on {config.task.name}",
        "config": config_summary(config, train_rows),
        "data": card,
        "baselines": {name: baseline_metrics for name, (baseline_metrics, _) in baselines.items()},
    }
    if config.eval.explain:  # which parts of the records moved the risks (cadft/explain/)
        from cadft.explain.report import explain_into, metrics_entry

        score = functools.partial(
            score_texts,
            model,
            tokenizer,
            head=config.head,
            batch_size=config.explain.batch_size,
            max_length=config.train.max_length,
            device=device,
            desc="explaining",
            prefix_reuse=config.eval.prefix_reuse,
        )
        calibrator = Recalibrator(**metrics["recalibration"])  # the one fitted on validation, or the saved one
        explained = explain_into(out_dir, config, table, train_rows, score, calibrator, lambda: device)
        metrics["explanations"], context["explanations"] = metrics_entry(explained.summary), explained.section
    write_report(
        out_dir,
        scored["validation"],
        scored["test"],
        metrics,
        curves={name: frame for name, (_, frame) in baselines.items()},
        plots=config.eval.plots,
        context=context,
    )
    return metrics, context["baselines"]


def _baselines(table: pl.DataFrame, config: Config, train_rows: pl.DataFrame, device: str, llm: tuple) -> dict:
    """The baselines on the run's terms; `llm` (the raw validation and test scores) for logistic+llm and pce+llm."""
    if not feature_columns(table):  # seed-JSON records carry text only
        log.warning("no feature columns: the report has no classical baselines")
        return {}
    terms = terms_for_run(table, config, train_rows)
    return run_baselines(table, terms, config, None, which=config.baselines.which, device=device, llm=llm)


def model_name(config: Config) -> str:
    return f"{config.backbone.name} {config.model.name}"


def config_summary(config: Config, train_rows: pl.DataFrame) -> dict[str, str]:
    """What a reader of the report needs to know about the run (the full config is config.yaml)."""
    train = config.train
    return {
        "backbone": config.backbone.name,
        "strategy (model)": config.model.name,
        "head": config.head.name,
        "imbalance": config.imbalance.method,
        "ZeRO": str(config.zero.stage or "none"),
        "task": f"{config.task.name}: {config.task.description}",
        "text template": config.text.name,
        "text features": ", ".join(config.text.features or ["all data.features"]),
        "training records": f"{train_rows.height} ({int(train_rows['label'].sum())} cases; "
        f"train.subsample={train.subsample})",
        "steps": f"max_steps={train.max_steps}, epochs={train.epochs}, batch {train.batch_size} x "
        f"{train.gradient_accumulation_steps}",
        "learning rate": str(config.model.learning_rate),
        "recalibration": config.eval.recalibration,
        "threshold choice": config.eval.threshold,
        "seed": str(config.seed),
    }


def subgroup_frame(rows: pl.DataFrame) -> pl.DataFrame:
    """eid, label, the follow-up (time, status, IPCW weight) and the columns subgroups are cut by, where the prepared
    table has them."""
    return rows.select("eid", "label", *[c for c in FOLLOWUP_COLUMNS + SUBGROUP_COLUMNS if c in rows.columns])
