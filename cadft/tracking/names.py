"""MLflow names: every tag, param and metric key cadft writes and other modules read, owned here, and the mapping of
metrics.json and the config onto them."""

from __future__ import annotations

import re

KIND_TAG = "kind"  # llm (a training run) | baseline | oracle | sweep (a sweep's parent run) | evaluation (cadft eval)
KIND_LLM, KIND_BASELINE, KIND_ORACLE, KIND_SWEEP = "llm", "baseline", "oracle", "sweep"
KIND_EVALUATION = "evaluation"  # cadft eval: a run of its own, a child of the training run it evaluates
KIND_EXPLANATION = "explanation"  # cadft explain: likewise
EVALUATES_TAG = "cadft.evaluates"  # an evaluation's training run id
EVALUATED_MODEL_TAG = "cadft.evaluated_model"  # the model folder an evaluation scored (model/ or checkpoint-N)
FINISHED_BY_TAG = "cadft.finished_by"  # a run stopped before scoring, finished later by `cadft eval RUN --finish`
RUN_TAGS = ("strategy", "head", "imbalance", "zero", "backbone")  # what a training run is (cadft.train.run.run_tags)
RUN_DIR_TAG = "cadft.run_dir"  # the run's local folder: cadft eval finds the run through it
ERROR_TAG = "cadft.error"  # a failed sweep job's error
RESUMED_WITH_TAG = "cadft.resumed_with"  # params a resumed run was given that differ from the logged ones
SWEPT_TAG = "cadft.swept."  # + key: a sweep job's value of a swept key (cadft.tracking.sweep)
SWEEP_TAG = "cadft.sweep."  # + config, swept, overrides, params, dir, job: a sweep's parent run and its jobs
MODEL_URI_TAG = "cadft.model_uri"  # a training run's logged pyfunc model (cadft.tracking.logged_model)
RANK_METRIC = "validation/auroc"  # runs are ranked on validation (the leaderboard, the UI view), never on test
USAGE_METRICS = {"train_seconds": "train/seconds", "peak_memory_gb": "train/peak_memory_gb"}
# Where training stopped and the step of the checkpoint validation chose (train.early_stopping_patience, epochs).
TRAINING_STEPS = {"steps": "train/steps", "best_step": "train/best_step"}
TRAINER_METRICS = {
    "loss": "train/loss_weighted",
    "loss_unweighted": "train/loss_unweighted",
    "learning_rate": "train/learning_rate",
    "grad_norm": "train/grad_norm",
    "examples_per_second": "train/examples_per_second",
}  # Trainer log key -> metric
COHORT_PARAM = "cohort/"  # + step (+ ".excluded"): the data card's cohort counts, as run params (cohort_params)
VALIDATION_DURING_TRAINING = (
    "val/"  # + metric: validation during training (model selection); final metrics: validation/, test/
)
COMPARISON = "comparison/"  # + baseline name + /metric: the paired comparison with a baseline
INCREMENTAL = "incremental/"  # + combination (logistic_llm) + /statistic: what the language model adds to it
# + <model>_<variant>/importance/<part>, /truth_spearman (+ _ci_low, _ci_high), /truth_rank_correlation_median:
# explanations (cadft explain, eval.explain=true); aggregates only
EXPLAIN = "explain/"


def flat_config(values: dict) -> dict[str, object]:
    """A plain config (cadft.config.typecheck.plain) as dotted keys: MLflow params."""
    flat: dict[str, object] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = node

    walk(values, "")
    return flat


def cohort_params(card: dict) -> dict[str, int]:
    """The data card's cohort_steps as params: cohort/<step> (the participants a step concerns, or the count read,
    cases,
    controls) and cohort/<step>.excluded. Aggregate counts only."""
    params = {}
    for step in card.get("cohort_steps", []):
        params[COHORT_PARAM + step["step"]] = step["participants"]
        if "excluded" in step:
            params[f"{COHORT_PARAM}{step['step']}.excluded"] = step["excluded"]
    return params


def flatten_metrics(metrics: dict) -> dict[str, float]:
    """Flat MLflow keys: test/auroc, test/auroc_ci_low, test/raw/brier, test/survival/uno_c,
    test/decision/t0.075/net_benefit, test/subgroup/sex_Female/auroc, comparison/logistic/delta_auroc,
    incremental/logistic_llm/nri, ...

    MLflow metric names allow only letters, digits, _ - . / space, so subgroup names are sanitised
    (`sex=Female` would be refused).
    """
    flat = {"threshold": float(metrics["threshold"]["value"])}
    flat |= {
        f"recalibration/{k}": float(v)
        for k, v in metrics["recalibration"]["params"].items()
        if isinstance(v, (int, float))
    }
    for split in ("validation", "test"):
        _flatten_block(flat, split, metrics[split])
    for row in metrics["test"].get("decision") or []:
        _flatten_block(flat, f"test/decision/t{row['threshold']:g}", row)
    for name, comparison in (metrics.get("comparison") or {}).items():
        _flatten_block(flat, f"{COMPARISON}{_mlflow_name(name)}", comparison)
    for name, incremental in (metrics.get("incremental") or {}).items():
        _flatten_block(flat, f"{INCREMENTAL}{_mlflow_name(name)}", incremental)
    if metrics.get("explanations"):
        flat |= flatten_explanations(metrics["explanations"])
    return flat


def flatten_explanations(summary: dict) -> dict[str, float]:
    """An explanation summary (cadft.explain.importance) as metrics: each method's global importance per part and its
    agreement with the truth."""
    flat = {}
    for row in summary.get("importance", []):
        method = _mlflow_name(f"{row['model']}_{row['variant']}")
        flat[f"{EXPLAIN}{method}/importance/{_mlflow_name(row['feature'])}"] = float(row["mean_abs_delta_logit"])
    for row in summary.get("agreement", []):
        method = f"{EXPLAIN}{_mlflow_name(row['model'] + '_' + row['variant'])}"
        for key, name in (
            ("spearman", "truth_spearman"),
            ("low", "truth_spearman_ci_low"),
            ("high", "truth_spearman_ci_high"),
            ("participant_rank_correlation_median", "truth_rank_correlation_median"),
        ):
            if row.get(key) is not None:
                flat[f"{method}/{name}"] = float(row[key])
    return flat


def _mlflow_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _flatten_block(flat: dict, prefix: str, block: dict) -> None:
    for key, value in block.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[f"{prefix}/{key}"] = float(value)
        elif isinstance(value, dict) and "value" in value:  # a paired difference: {value, low, high}
            flat |= {
                f"{prefix}/{key}{suffix}": float(value[part])
                for part, suffix in (("value", ""), ("low", "_ci_low"), ("high", "_ci_high"))
                if value.get(part) is not None
            }
    for name, interval in (block.get("ci") or {}).items():
        if interval is None:
            continue
        flat[f"{prefix}/{name}_ci_low"], flat[f"{prefix}/{name}_ci_high"] = (
            float(interval["low"]),
            float(interval["high"]),
        )
    for group, subgroups in (block.get("subgroups") or {}).items():
        for name, sub in subgroups.items():
            _flatten_block(flat, f"{prefix}/subgroup/{_mlflow_name(f'{group}_{name}')}", sub)
    if block.get("raw"):
        _flatten_block(flat, f"{prefix}/raw", block["raw"])
    if block.get("survival"):  # test/survival/uno_c, ... (cadft.eval.survival)
        _flatten_block(flat, f"{prefix}/survival", block["survival"])
