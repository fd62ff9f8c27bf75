"""A trained run as an MLflow pyfunc model: backbone + adapter/head + calibrator + text builder in one loadable unit.

    model = mlflow.pyfunc.load_model("runs:/<run id>/risk_model")
    risks = model.predict(extract_rows)   # extract rows as pandas reads them: pd.read_csv(path, dtype=str), any naming

The model's artifacts are the run's resolved config and model folder (adapter or weights, tokenizer,
cadft_model.json, calibrator.json); the backbone itself is loaded as the run loaded it (the converted SmolLM2
in the cadft cache, a hub id or a local folder), so it must be available where the model is loaded.
`predict` returns eid, risk (recalibrated) and raw_score per participant, the same numbers as cadft-predict.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import mlflow
import pandas as pd

from cadft.layout import MODEL_DIR, RESOLVED_CONFIG, RunLayout
from cadft.quiet import without_log_records

ARTIFACT = "risk_model"  # the logged model's name in its MLflow run
RUN_ARTIFACT = "run"  # the artifact key holding the run's config and model folder


class CadftRiskModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from cadft.predict.trained_run import TrainedRun

        self.trained = TrainedRun(Path(context.artifacts[RUN_ARTIFACT]))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        import polars as pl

        with tempfile.TemporaryDirectory(prefix="cadft-pyfunc-") as folder:
            extract = Path(folder) / "extract.parquet"  # the same reader as cadft-predict, on the same values as text
            pl.from_pandas(model_input.astype("string")).write_parquet(extract)
            return self.trained.predict(self.trained.record_table(extract, "parquet")).to_pandas()


def log_risk_model(run_dir: Path, tracking_uri: str, run_id: str, register_as: str | None = None) -> str:
    """Log the run as a pyfunc model of MLflow run `run_id` (and register it under `register_as`); returns its URI."""
    from mlflow.models import Model

    layout = RunLayout(run_dir)
    mlflow.set_tracking_uri(tracking_uri)  # where Model.log creates the logged model
    # ... in the run's experiment: MLflow 3.17 takes the current (by default the Default) experiment before the source
    # run's, and the Default experiment's artifacts land in ./mlruns of whatever folder the user ran from.
    mlflow.set_experiment(experiment_id=mlflow.get_run(run_id).info.experiment_id)
    with tempfile.TemporaryDirectory(prefix="cadft-risk-model-") as folder:
        bundle = Path(folder) / RUN_ARTIFACT
        bundle.mkdir()
        shutil.copy(layout.config, bundle / RESOLVED_CONFIG)
        shutil.copytree(layout.model_dir, bundle / MODEL_DIR)
        # MLflow warns that it cannot infer a signature from the DataFrame type hints. The input is an extract in any of
        # the supported namings (Showcase, .tab, RAP), so no fixed column schema describes it: nothing to fix.
        with without_log_records(
            "mlflow.pyfunc", lambda message: message.startswith("Failed to infer model signature")
        ):
            info = Model.log(
                artifact_path=None,
                name=ARTIFACT,
                flavor=mlflow.pyfunc,
                run_id=run_id,
                registered_model_name=register_as,
                python_model=str(Path(__file__).with_name("risk_model_code.py")),  # models-from-code: nothing pickled
                artifacts={RUN_ARTIFACT: str(bundle)},
                pip_requirements=["cadft"],
            )
    return info.model_uri
