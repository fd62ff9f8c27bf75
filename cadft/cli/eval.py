"""cadft eval: a trained run -> metrics.json, predictions.jsonl, plots and report.html, logged to an MLflow run of its
own; the training run's record is never changed.

    cadft eval TARGET [KEY=VALUE ...] [--out DIR] [--device auto|cpu|cuda] [--tracking-uri URI]
    cadft eval RUN_DIR --finish [data.path=FILE]

TARGET is a training run dir (outputs/runs/DATE/TIME), one of its checkpoints
(.../checkpoints/checkpoint-N), a saved model dir, or an MLflow run id. Only what the run saved is used:
its resolved config, the adapter or model, and the prepared splits (rebuilt from data.path through the
cache if they are gone). KEY=VALUE overrides the saved config, e.g. eval.threshold=max_f1 eval.bootstrap=2000
(not what the model was trained on: task, data.features, text, head, backbone). The model folder is checked first:
its files must be the ones the run saved and its calibrator finite (cadft.predict.check).
The calibrator saved beside the model (model/calibrator.json) is reused when eval.recalibration names its method;
otherwise (another method, a checkpoint) it is fitted again on validation. The baselines are refitted on the run's
own training records and features (deterministic), so the comparison matches the run's.
Writes to --out (default: a new <run dir>/evaluations/<date>_<time>/, or eval/ inside a checkpoint) and, when the
run has an MLflow record, logs to a new run of kind=evaluation nested under the training run (tag cadft.evaluates).

--finish completes a run stopped after its model was saved but before it was scored (model/calibrator.json
missing, which cadft predict needs): it evaluates with the run's own config into the run's eval/, writes the
calibrator training would have written, and logs the metrics into the training run, whose status stays as it was.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cadft.cli.common import ArgumentParser, exit_on_user_error, prog_name, stop_on_signals
from cadft.config.validate import check_overrides
from cadft.layout import METRICS_FILE, PREDICTIONS_FILE, REPORT_FILE


def main(argv: list[str] | None = None) -> None:
    prog = prog_name("eval")
    stop_on_signals()  # SIGTERM and SIGINT end its MLflow run KILLED and leave no partial report
    exit_on_user_error(prog)(_main)(prog, sys.argv[1:] if argv is None else argv)


def _main(prog: str, argv: list[str]) -> None:
    from cadft.eval.saved_run import Target, evaluate, finished_target, load_run_config, resolve_target

    parser = ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", help="run dir, checkpoint dir, model dir or MLflow run id")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE overrides of the run's config (eval.*, data.path, ...)")
    parser.add_argument("--out", type=Path, help="output dir (default: eval/ in the run or checkpoint)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--tracking-uri", help="MLflow tracking URI to find a run id in (default: MLFLOW_TRACKING_URI)")
    parser.add_argument(
        "--finish", action="store_true", help="complete a run stopped before it was scored: its calibrator and eval/"
    )
    args = parser.parse_args(argv)
    if args.finish and args.out:
        parser.error("--finish writes the run's own eval/: no --out")
    check_overrides(args.overrides)  # before the run is looked up: a mistake stops here
    target = resolve_target(args.target, args.tracking_uri)
    if args.finish:
        target = finished_target(target, args.overrides)
    elif args.out:
        target = Target(target.run_dir, target.model_dir, args.out.resolve())
    config = load_run_config(target.run_dir, args.overrides)
    metrics, baselines = evaluate(
        target, config, device_setting=args.device, overrides=args.overrides, finish=args.finish
    )
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
