"""cadft-baselines: logistic regression, LightGBM, age alone and the Pooled Cohort Equations (plus the oracle on
synthetic cohorts) on the same prepared split and terms as the language models, logged to the same MLflow experiment.

    cadft-baselines [data=synthetic|ukb data.path=FILE] [task=...] [text=...] [train.max_train_examples=N ...]
                    [eval.KEY=VALUE ...] [baselines.which=[logistic,pce]]

Shares the Hydra config with cadft-train: the same `data`/`task`/`text`/`train` overrides select the same prepared
table (from the cache), the same text features and the same training records, so `logistic` and `lightgbm` are on
equal terms with the training run of that config (`*_all`: every feature, the whole training split). Each baseline
is fitted on train, tuned, recalibrated and thresholded on validation, and scored once on test; its files
(metrics.json, predictions.jsonl, plots, report.html) go to <run dir>/<name>/ and to an MLflow run tagged
kind=baseline (kind=oracle for the synthetic cohort's true risk). cadft-train's own report holds the same comparison.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from cadft import tracking
from cadft.cli import CONF_DIR, absolute_paths, check_command_line, exit_on_user_error, quote_stage_choices
from cadft.config import validate


def run(cfg: DictConfig, run_dir: Path) -> dict[str, dict]:
    from cadft.baselines import Terms, run_baselines
    from cadft.dataset import training_records
    from cadft.eval.metrics import flatten_metrics
    from cadft.eval.run import NON_FEATURE_COLUMNS, artifact_files, oracle_path_for
    from cadft.prepare import prepare
    from cadft.text import text_feature_names

    validate(cfg)
    run_dir = run_dir.resolve()
    absolute_paths(cfg)
    tracking.check_writable(run_dir, "run dir (hydra.run.dir)")
    tracking.preflight(cfg)
    prepared = prepare(cfg)
    table = prepared.table()
    all_features = [c for c in table.columns if c not in NON_FEATURE_COLUMNS]
    terms = Terms(text_feature_names(all_features, cfg.text.get("features")), all_features, training_records(table, cfg)["eid"].to_numpy())
    results = run_baselines(table, terms, cfg, run_dir, seed=int(cfg.seed), oracle_path=oracle_path_for(cfg), which=tuple(cfg.baselines.which),
                            context={"data": prepared.card})
    for name, (metrics, _) in results.items():
        kind = tracking.KIND_ORACLE if name == "oracle" else tracking.KIND_BASELINE
        tags = {tracking.KIND_TAG: kind, "baseline": name, "strategy": name, "task": cfg.task.name, "data_hash": prepared.key[:12],
                "git_commit": tracking.git_commit(), tracking.RUN_DIR_TAG: str(run_dir / name)}
        tracking.start_run(cfg, run_dir / name, tags, run_name=f"{kind}-{name}")
        try:
            tracking.log_params({"baseline": name, "task.name": cfg.task.name, "data.path": cfg.data.path, "seed": cfg.seed,
                                 "baseline.train_records": metrics["baseline"].get("train_records"),
                                 "baseline.features": metrics["baseline"].get("features"), "baseline.tuned": metrics["baseline"].get("tuned"),
                                 "eval.recalibration": metrics["recalibration"]["method"]})
            tracking.log_metrics(flatten_metrics(metrics))
            tracking.log_artifacts(artifact_files(run_dir / name, include_eids=tracking.may_log_eids(cfg)), artifact_path="eval")
        finally:
            tracking.end_run()
    return {name: metrics for name, (metrics, _) in results.items()}


def main() -> None:
    quote_stage_choices(sys.argv)
    check_command_line("cadft-baselines", "baselines_cli", sys.argv[1:])
    _hydra_main()


@hydra.main(config_path=CONF_DIR, config_name="baselines_cli", version_base="1.3")
@exit_on_user_error("cadft-baselines")
def _hydra_main(cfg: DictConfig) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    results = run(cfg, run_dir)
    from cadft.eval.summary import print_summary

    print_summary(f"cadft-baselines on {cfg.task.name} (recalibration: {cfg.eval.recalibration}; test scored once)", results,
                  footer=[f"reports: {run_dir.resolve()}/<model>/report.html"])


if __name__ == "__main__":
    main()
