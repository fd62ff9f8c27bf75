"""The MLflow UI's view of cadft runs (cadft ui, `make ui`): a run table that shows what runs are.

Out of the box the MLflow UI's run table shows neither tags nor metrics. Each experiment in the store
therefore gets a saved view, "cadft", whose table shows strategy, imbalance, ZeRO stage, backbone, the
values a sweep varied and the headline test metrics; its URL is printed per experiment, and the view is
also in the UI's "Views" menu. Then `mlflow ui` replaces this process: bound to 127.0.0.1, one worker
(the default four take seconds longer to start and gain nothing for one user).

A saved view is what the UI's own "Save as new view" writes (MLflow 3.17): an experiment tag
`mlflow.sharedViewState.<key>` holding {name, createdAt, state}, state being the page state as JSON;
tests/test_ui.py checks in a browser that the UI reads it.
"""

from __future__ import annotations

import json
import time

from cadft.tracking import names

VIEW_KEY = "cadft"
VIEW_TAG = "mlflow.sharedViewState." + VIEW_KEY
HEADLINE_METRICS = (
    names.RANK_METRIC,
    "test/auroc",
    "test/auprc",
    "test/brier",
    "test/oe_ratio",
    "test/calibration_slope",
    *names.USAGE_METRICS.values(),
    names.TRAINING_STEPS["best_step"],
)  # CIs: cadft-compare


def view_state(swept_tags: list[str]) -> dict:
    """The run-table columns (the UI's column keys: `tags.\\`name\\``, `metrics.\\`name\\``), best validation AUROC
    first."""
    columns = [f"tags.`{tag}`" for tag in [*names.RUN_TAGS, *swept_tags]] + [
        f"metrics.`{metric}`" for metric in HEADLINE_METRICS
    ]
    return {"selectedColumns": columns, "orderByKey": "attributes.start_time", "orderByAsc": False}


def add_views(client) -> dict[str, str]:
    """Write (or refresh) the cadft view in every experiment; returns experiment name -> id."""
    experiments = {}
    for experiment in client.search_experiments():
        runs = client.search_runs([experiment.experiment_id], max_results=1000)
        swept = sorted({tag for run in runs for tag in run.data.tags if tag.startswith(names.SWEPT_TAG)})
        now = int(time.time() * 1000)
        view = {"name": VIEW_KEY, "createdAt": now, "updatedAt": now, "state": json.dumps(view_state(swept))}
        client.set_experiment_tag(experiment.experiment_id, VIEW_TAG, json.dumps(view))
        experiments[experiment.name] = experiment.experiment_id
    return experiments


def experiment_url(base: str, experiment_id: str) -> str:
    # workflowType: the UI opens experiments in GenAI mode otherwise; /runs: the bare experiment route drops the view
    # key
    return f"{base}/#/experiments/{experiment_id}/runs?viewStateShareKey={VIEW_KEY}&workflowType=machine_learning"
