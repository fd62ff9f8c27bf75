"""cadft baselines: logistic regression, LightGBM, age alone, the Pooled Cohort Equations and the zero-shot backbone
(plus the oracle on synthetic cohorts) on the same prepared split and terms as the language models, each logged to the
same MLflow experiment as a run of its own.

    cadft baselines [data=synthetic|ukb data.path=FILE] [task=...] [text=...] [train.max_train_examples=N ...]
                    [eval.KEY=VALUE ...] [baselines.which=[logistic,pce]]

Shares the Hydra config with cadft train: the same `data`/`task`/`text`/`train` overrides select the same prepared
table (from the cache), the same text features and the same training records, so `logistic` and `lightgbm` are on
equal terms with the training run of that config (`*_all`: every feature, the whole training split). Reports go to
<run dir>/<name>/ (cadft.eval.baselines.tracked); cadft train's own report holds the same comparison.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cadft.cli.common import hydra_app, prog_name, stop_on_signals
from cadft.config.validate import validate, with_absolute_paths


def main(argv: list[str] | None = None) -> None:
    stop_on_signals()  # SIGTERM and SIGINT end the MLflow run being logged KILLED
    hydra_app("baselines", "baselines_cli", _baselines, sys.argv[1:] if argv is None else list(argv))


def _baselines(cfg) -> None:
    from hydra.core.hydra_config import HydraConfig

    from cadft.eval.baselines.tracked import run_tracked_baselines
    from cadft.eval.summary import print_summary

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    config = with_absolute_paths(validate(cfg))
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    results = run_tracked_baselines(config, run_dir)
    print_summary(
        f"{prog_name('baselines')} on {config.task.name} (recalibration: {config.eval.recalibration}; test "
        "scored once)",
        results,
        footer=[f"reports: {run_dir.resolve()}/<model>/report.html"],
    )


if __name__ == "__main__":
    main()
