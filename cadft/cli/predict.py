"""cadft predict: apply a trained run to new participants: extract in, calibrated 10-year risk out.

    cadft predict run=RUN_DIR data.path=EXTRACT out=risks.csv [data.format=auto|showcase|tab|rap|parquet]
                  [data.withdrawals=FILE] [task=NAME] [device=auto|cpu|cuda] [batch_size=N] [explain=true]

Reads any supported extract (only the columns of the run's features), builds each record's text exactly as the
run did (the run's saved config: data.features and the text template, not today's defaults), scores it with the
run's model and applies the calibrator saved with it (model/calibrator.json). Writes a CSV with eid, risk (the
recalibrated probability, the number to use), raw_score (the model's output before recalibration); written to a
temporary file and renamed, so a failure leaves nothing behind. Labels and outcome fields are not needed: these
are new people. Withdrawn participants are never scored: those in the run's withdrawals file (its
data.withdrawals, which must still be readable), those in `data.withdrawals=FILE` (UK Biobank's latest list; both
apply), and every negative eid.
`task=NAME`, when given, must be the run's task (a model for one outcome does not predict another).
`explain=true` adds each person's top reasons (the run's explain.reasons, 3 by default): reason_1 ... with the part of
the record whose removal moved the risk most and reason_1_delta_risk, the risk minus the risk without it (as cadft
explain gives them; docs/explanations.md). It costs 1 + parts more forward passes per person.
Exit status 2 with one line for bad input: an unreadable run, a run without a calibrator, missing columns.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cadft.cli.common import exit_on_user_error, prog_name, stop_on_signals
from cadft.errors import CadftError
from cadft.files import atomic_file, check_writable, writing

ARGUMENTS = {
    "run": "a training run dir",
    "data.path": "the extract to score",
    "out": "the CSV to write",
    "data.format": "auto | showcase | tab | rap | parquet",
    "data.withdrawals": "a file of withdrawn eids, one a line",
    "task": "the run's task name (a check)",
    "device": "auto | cpu | cuda",
    "batch_size": "records per scoring batch",
    "explain": "true | false: add each person's top reasons (1 + parts more forward passes each)",
}
REQUIRED = ("run", "data.path", "out")


def parse_arguments(argv: list[str]) -> dict[str, str]:
    """KEY=VALUE arguments, checked: unknown keys and missing required ones are one clear error."""
    import difflib

    values = {}
    for argument in argv:
        key, sep, value = argument.partition("=")
        if not sep:
            raise CadftError(f"{argument!r}: arguments are KEY=VALUE; keys: {', '.join(ARGUMENTS)}")
        if key not in ARGUMENTS:
            close = difflib.get_close_matches(key, ARGUMENTS, n=1)
            raise CadftError(
                f"{key}: unknown argument"
                + (f"; did you mean {close[0]}?" if close else "")
                + f" (allowed: {', '.join(ARGUMENTS)})"
            )
        values[key] = value
    missing = [key for key in REQUIRED if not values.get(key)]
    if missing:
        raise CadftError(
            f"missing {', '.join(f'{key}=' for key in missing)}: {'; '.join(f'{k}: {ARGUMENTS[k]}' for k in missing)}"
        )
    if values.get("device", "auto") not in ("auto", "cpu", "cuda"):
        raise CadftError(f"device={values['device']}; allowed: auto, cpu, cuda")
    if "batch_size" in values and (not values["batch_size"].isdigit() or int(values["batch_size"]) < 1):
        raise CadftError(f"batch_size={values['batch_size']}; must be a positive integer")
    if values.get("explain", "false") not in ("true", "false"):
        raise CadftError(f"explain={values['explain']}; allowed: true, false")
    return values


def main(argv: list[str] | None = None) -> None:
    prog = prog_name("predict")
    stop_on_signals()  # SIGTERM and SIGINT leave no partial CSV
    exit_on_user_error(prog)(_main)(prog, sys.argv[1:] if argv is None else argv)


def _main(prog: str, argv: list[str]) -> None:
    from cadft.predict.trained_run import TrainedRun

    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return
    args = parse_arguments(argv)
    out = Path(args["out"]).expanduser().resolve()
    if not Path(args["data.path"]).is_file():
        raise CadftError(f"data.path={args['data.path']}: no such file")
    if out.is_dir():
        raise CadftError(f"out={out} is a folder; give a file name such as risks.csv")
    check_writable(out.parent, "out= folder", create=False)  # before the model loads and scores
    trained = TrainedRun(Path(args["run"]).expanduser().resolve(), args.get("device", "auto"))
    if args.get("task") and args["task"] != trained.config.task.name:
        raise CadftError(
            f"task={args['task']}, but run={args['run']} predicts {trained.config.task.name} "
            f"({trained.config.task.description})"
        )
    withdrawals = Path(args["data.withdrawals"]).expanduser().resolve() if args.get("data.withdrawals") else None
    records = trained.record_table(Path(args["data.path"]).resolve(), args.get("data.format", "auto"), withdrawals)
    batch_size = int(args["batch_size"]) if "batch_size" in args else None
    risks = trained.predict(records, batch_size)
    explained = ""
    if args.get("explain") == "true":
        from cadft.explain.report import reasons_of_records

        reasons, scored = reasons_of_records(
            records, trained.config, lambda texts: trained.score(texts, batch_size, "explaining"), trained.recalibrator
        )
        risks = risks.join(reasons, on="eid", how="left", maintain_order="left")
        explained = f"; top {trained.config.explain.reasons} reasons each ({scored} distinct records scored for them)"
    with writing(out), atomic_file(out) as partial:  # all or nothing; a full disk is one line
        risks.write_csv(partial)
    print(
        f"{prog}: {risks.height} participants scored by {args['run']} ({trained.config.task.name}; recalibration "
        f"{trained.recalibrator.method}); mean risk {risks['risk'].mean():.2%}{explained}; wrote {out}"
    )


if __name__ == "__main__":
    main()
