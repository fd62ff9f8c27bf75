"""cadft eval: a trained run -> metrics.json, predictions.jsonl, plots and report.html, logged to its MLflow run.

    cadft eval TARGET [KEY=VALUE ...] [--out DIR] [--device auto|cpu|cuda] [--tracking-uri URI]

TARGET is a training run dir (outputs/runs/DATE/TIME), one of its checkpoints
(.../checkpoints/checkpoint-N), a saved model dir, or an MLflow run id. Only what the run saved is used:
its resolved config, the adapter or model, and the prepared splits (rebuilt from data.path through the
cache if they are gone). KEY=VALUE overrides the saved config, e.g. eval.threshold=max_f1 eval.bootstrap=2000.
The calibrator saved beside the model (model/calibrator.json) is reused when eval.recalibration names its method;
otherwise (another method, a checkpoint) it is fitted again on validation. The baselines are refitted on the run's
own training records and features (deterministic), so the comparison matches the run's.
Writes to --out (default: the run's eval/ dir, or eval/ inside a checkpoint) and logs the metrics and
files to the run's MLflow run when it has one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cadft.cli.common import ArgumentParser, exit_on_user_error, prog_name
from cadft.config.validate import check_overrides
from cadft.layout import METRICS_FILE, PREDICTIONS_FILE, REPORT_FILE


def main(argv: list[str] | None = None) -> None:
    prog = prog_name("eval")
    exit_on_user_error(prog)(_main)(prog, sys.argv[1:] if argv is None else argv)


def _main(prog: str, argv: list[str]) -> None:
    from cadft.eval.saved_run import Target, evaluate, load_run_config, resolve_target

    parser = ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", help="run dir, checkpoint dir, model dir or MLflow run id")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE overrides of the run's config (eval.*, data.path, ...)")
    parser.add_argument("--out", type=Path, help="output dir (default: eval/ in the run or checkpoint)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--tracking-uri", help="MLflow tracking URI to find a run id in (default: MLFLOW_TRACKING_URI)")
    args = parser.parse_args(argv)
    check_overrides(args.overrides)  # before the run is looked up: a mistake stops here
    target = resolve_target(args.target, args.tracking_uri)
    if args.out:
        target = Target(target.run_dir, target.model_dir, args.out.resolve())
    config = load_run_config(target.run_dir, args.overrides)
    metrics, baselines = evaluate(target, config, device_setting=args.device)
    from cadft.eval.summary import print_summary

    print_summary(
        f"{prog}: {target.model_dir} (risks recalibrated: {metrics['recalibration']['method']})",
        {metrics["model"]: metrics} | baselines,
        metrics.get("comparison"),
        footer=[
            f"{name}: {target.out_dir / file}"
            for name, file in (("metrics", METRICS_FILE), ("predictions", PREDICTIONS_FILE), ("report", REPORT_FILE))
        ],
    )


if __name__ == "__main__":
    main()
