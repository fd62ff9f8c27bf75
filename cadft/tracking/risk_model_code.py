"""The logged model's code (MLflow models-from-code): MLflow runs this file when it loads a cadft risk model, so the
model is rebuilt from cadft's code rather than unpickled."""

import mlflow

from cadft.tracking.logged_model import CadftRiskModel

mlflow.models.set_model(CadftRiskModel())
