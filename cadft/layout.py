"""The run folder: every file and folder name cadft writes into a run, in one place.

    <run dir>/
      config.yaml        the composed config, resolved, absolute paths: eval and predict rebuild the run from it
      prepared.json      where the run's prepared table is (path and cache key)
      mlflow_run.json    the run's MLflow run id and store
      model/             adapter + score head (lora, qlora) or all weights, tokenizer, cadft_model.json (how to
      rebuild),
                         calibrator.json (recalibration fitted on validation), training_sample.json (case fraction,
                         class weights: counts only)
      checkpoints/checkpoint-N/
      eval/              metrics.json, predictions.jsonl, report.html, the plots; shareable/ (predictions without eids);
                         with eval.explain=true also explanations.parquet, explanations.json, global_importance.png
      explain/           cadft explain: explanations.parquet, explanations.json, global_importance.png, report.html
      evaluations/DATE_TIME/  each later `cadft eval` of the run (its own MLflow run): eval/ stays what training wrote

A sweep dir holds one run dir per job (0/, 1/, ...), mlflow_sweep.json and the leaderboard files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RESOLVED_CONFIG = "config.yaml"
PREPARED_RECORD = "prepared.json"
RUN_RECORD = "mlflow_run.json"
MODEL_DIR = "model"
CHECKPOINT_DIR = "checkpoints"
EVAL_DIR = "eval"
EVALUATIONS_DIR = "evaluations"
CHECKPOINT_INFO = "cadft_model.json"
CALIBRATOR_FILE = "calibrator.json"
TRAINING_SAMPLE_FILE = "training_sample.json"
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.jsonl"
REPORT_FILE = "report.html"
SHAREABLE_DIR = "shareable"
EXPLAIN_DIR = "explain"
EXPLANATIONS_FILE = "explanations.parquet"
EXPLANATIONS_SUMMARY = "explanations.json"
IMPORTANCE_PLOT = "global_importance.png"
SWEEP_RECORD = "mlflow_sweep.json"
LEADERBOARD_CSV = "leaderboard.csv"
LEADERBOARD_PLOT = "auroc_forest.png"
LEADERBOARD_HTML = "leaderboard.html"
LEARNING_CURVE_CSV = "learning_curve.csv"
LEARNING_CURVE_PLOT = "learning_curve.png"


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / RESOLVED_CONFIG

    @property
    def prepared_record(self) -> Path:
        return self.root / PREPARED_RECORD

    @property
    def run_record(self) -> Path:
        return self.root / RUN_RECORD

    @property
    def model_dir(self) -> Path:
        return self.root / MODEL_DIR

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINT_DIR

    @property
    def eval_dir(self) -> Path:
        return self.root / EVAL_DIR

    @property
    def evaluations(self) -> Path:
        return self.root / EVALUATIONS_DIR

    @property
    def explain_dir(self) -> Path:
        return self.root / EXPLAIN_DIR
