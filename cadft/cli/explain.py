"""cadft explain: which parts of each record moved a trained run's risks, for the language model and, on the same
participants, the baselines; on a synthetic cohort, checked against each participant's true risk factors.

    cadft explain run=RUN_DIR [data.path=EXTRACT] [explain.n=N] [KEY=VALUE ...] [out=DIR] [device=auto|cpu|cuda]

Explains explain.n participants of the run's explain.split (a fixed random sample, explain.seed): each part of a
record (a text feature; a history item with text.history=on) is taken out, or set to the training split's median or
most common value (explain.variants), and the record scored again: the change in the model's log-odds (Δlogit) and in
its calibrated risk (Δrisk, the calibrator saved with the run). Cost: 1 + parts x variants forward passes per
participant (identical records scored once); printed at the end. Logistic regression (coefficient x centred value) and
LightGBM (TreeSHAP) are explained on the same participants (explain.baselines).
The records are written again from data.path (the run's extract by default): pass data.path=FILE for a copy of it.
KEY=VALUE overrides the run's saved config (explain.*, eval.ci_level, data.path), checked before anything is read.
Writes explanations.parquet (eid, feature, delta_logit, delta_risk, variant, model), explanations.json (global
importance with CIs, direction, agreement with the truth, cost), global_importance.png and report.html (each
participant's top reasons) to out= (default RUN_DIR/explain), and logs them to an MLflow run of its own, nested under
the training run (kind=explanation, tag cadft.evaluates), whose record it leaves as training wrote it (as cadft eval;
SIGTERM and Ctrl-C end it KILLED): per-participant files to a tracking server only with tracking.log_eids=true, as
predictions.
Exit status 2 with one line for bad input: not a run, a run without its model or calibrator, an unknown key or part.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cadft.cli.common import exit_on_user_error, prog_name, stop_on_signals
from cadft.config.validate import check_overrides
from cadft.errors import CadftError

ARGUMENTS = {"run": "a training run dir", "out": "output folder (default RUN_DIR/explain)", "device": "auto|cpu|cuda"}


def parse_arguments(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """(this command's own KEY=VALUE arguments, the overrides of the run's config), checked."""
    own, overrides = {}, []
    for argument in argv:
        key, sep, value = argument.partition("=")
        if not sep or not key:
            raise CadftError(f"{argument!r}: arguments are KEY=VALUE (run=RUN_DIR, explain.n=100, ...)")
        if key in ARGUMENTS:
            own[key] = value
        else:
            overrides.append(argument)
    if not own.get("run"):
        raise CadftError("missing run=: the training run dir to explain")
    if own.get("device", "auto") not in ("auto", "cpu", "cuda"):
        raise CadftError(f"device={own['device']}; allowed: auto, cpu, cuda")
    check_overrides(overrides)
    return own, overrides


def main(argv: list[str] | None = None) -> None:
    prog = prog_name("explain")
    stop_on_signals()
    exit_on_user_error(prog)(_main)(prog, sys.argv[1:] if argv is None else argv)


def _main(prog: str, argv: list[str]) -> None:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return
    from cadft.data.subsample import training_records
    from cadft.eval import evaluation_run
    from cadft.eval.report import shareable_files
    from cadft.eval.run import model_name
    from cadft.eval.saved_run import load_prepared_table
    from cadft.explain.report import explain_into, print_explanation
    from cadft.layout import RunLayout
    from cadft.predict.trained_run import TrainedRun
    from cadft.tracking import names

    own, overrides = parse_arguments(argv)
    trained = TrainedRun(Path(own["run"]).expanduser().resolve(), own.get("device", "auto"), overrides)
    config = trained.config
    out = Path(own["out"]).expanduser().resolve() if own.get("out") else RunLayout(trained.run_dir).explain_dir
    if out.exists() and not out.is_dir():
        raise CadftError(f"out={out} is a file; give a folder")
    table, _ = load_prepared_table(trained.run_dir, config)
    logged = evaluation_run.evaluation_run(
        trained.run_dir, trained.model_dir, out, config, overrides, kind=names.KIND_EXPLANATION
    )
    with logged:  # a new run nested under the training run: FINISHED, KILLED when stopped, FAILED on an error
        explained = explain_into(
            out,
            config,
            table,
            training_records(table, config),
            lambda texts: trained.score(texts, config.explain.batch_size, "explaining"),
            trained.recalibrator,
            lambda: trained.device,
            page_title=f"cadft explain: {model_name(config)} on {config.task.name} ({own['run']})",
        )
        files = shareable_files(out, include_eids=evaluation_run.may_log_eids(trained.run_dir, config))
        evaluation_run.log_results(names.flatten_explanations(explained.summary), files, artifact_path="explain")
    print_explanation(
        f"{prog}: {trained.run_dir} ({explained.summary['participants']} participants of {config.explain.split})",
        explained.explanation,
        model_name(config),
        footer=[f"{name}: {path}" for name, path in explained.files.items()],
    )


if __name__ == "__main__":
    main()
