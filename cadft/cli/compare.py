"""cadft compare: a leaderboard of training runs, for a sweep or a whole MLflow experiment (cadft.tracking.leaderboard).

    cadft compare [PARENT_RUN_ID] [--experiment NAME] [--tracking-uri URI] [--out DIR] [--html]

With no argument it shows the latest sweep (the newest parent run a `cadft train -m` opened); with a parent run id,
that sweep; with --experiment, every run of that experiment (training runs and baselines). Runs are ranked by
VALIDATION AUROC; the test columns are reported beside it, never used to choose. The table goes to DIR as
leaderboard.csv with a forest plot (auroc_forest.png) and with --html as leaderboard.html; for a sweep DIR defaults to
the sweep dir and the files are also logged to the parent run. A sweep over train.max_train_examples also gets
learning_curve.csv and learning_curve.png (cadft.tracking.learning_curve).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from cadft.cli.common import ArgumentParser, exit_on_user_error, prog_name
from cadft.errors import CadftError
from cadft.tracking import learning_curve, names
from cadft.tracking.leaderboard import (
    ARTIFACT_DIR,
    CSV_FILE,
    PLOT_FILE,
    RUN_COLUMNS,
    experiment_runs,
    latest_sweep,
    leaderboard,
    print_leaderboard,
    publish,
    sweep_leaderboard,
    sweep_runs,
)
from cadft.tracking.store import default_tracking_uri

RUN_ID = re.compile(r"[0-9a-f]{32}")  # MLflow run ids: uuid4 hex


def main(argv: list[str] | None = None) -> None:
    prog = prog_name("compare")
    exit_on_user_error(prog)(_main)(prog, sys.argv[1:] if argv is None else argv)


def check_arguments(parent_run_id: str | None, uri: str, out: Path | None) -> None:
    """Before MLflow is asked (it would create an empty store at a mistyped path): the run id's form, the
    store, --out."""
    if parent_run_id is not None and not RUN_ID.fullmatch(parent_run_id):
        raise CadftError(
            f"PARENT_RUN_ID={parent_run_id}: not an MLflow run id (32 hexadecimal digits, as the MLflow UI shows)"
        )
    if uri.startswith(("sqlite:///", "file:")):
        store = Path(uri.removeprefix("sqlite:///").removeprefix("file://").removeprefix("file:"))
        if not store.exists():
            raise CadftError(
                f"--tracking-uri {uri}: no MLflow store at {store} (cadft train creates it; pass the store a "
                "run logged to)"
            )
    elif not re.match(r"[a-z][a-z0-9+.-]*://|databricks", uri):
        raise CadftError(
            f"--tracking-uri {uri}: not a tracking URI; allowed: sqlite:///FILE, file:DIR, "
            "http(s)://HOST:PORT, databricks"
        )
    if out is not None and out.exists() and not out.is_dir():
        raise CadftError(f"--out {out}: is a file; give a folder for {CSV_FILE} and {PLOT_FILE}")


def _main(prog: str, argv: list[str]) -> None:
    parser = ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parent_run_id", nargs="?", help="a sweep's parent run id (default: the latest sweep)")
    parser.add_argument("--experiment", help="every training run of this MLflow experiment instead of one sweep")
    parser.add_argument("--tracking-uri", help="MLflow store (default: cadft train's, sqlite:///<outputs>/mlflow.db)")
    parser.add_argument(
        "--out", type=Path, help="folder for leaderboard.csv and auroc_forest.png (default: the sweep dir)"
    )
    parser.add_argument("--html", action="store_true", help="also write leaderboard.html (static; plots embedded)")
    args = parser.parse_args(argv)
    if args.parent_run_id and args.experiment:
        parser.error("give a parent run id or --experiment, not both")
    uri = args.tracking_uri or default_tracking_uri()
    check_arguments(args.parent_run_id, uri, args.out)
    from mlflow.exceptions import MlflowException

    from cadft.tracking.sqlite_store import client_for

    client = client_for(uri)
    if args.experiment:
        board, parent_id, title = (
            leaderboard(experiment_runs(client, args.experiment), RUN_COLUMNS),
            None,
            f"experiment {args.experiment}",
        )
        out_dir = args.out or Path(f"leaderboard-{args.experiment}")
    else:
        try:
            parent = client.get_run(args.parent_run_id) if args.parent_run_id else latest_sweep(client)
        except MlflowException as err:
            raise CadftError(f"{args.parent_run_id}: no such run in {client.tracking_uri} ({err.error_code})") from None
        parent_id, title = parent.info.run_id, f"sweep {parent.info.run_name}"
        board = sweep_leaderboard(client, parent_id)
        sweep_dir = parent.data.tags.get(names.SWEEP_TAG + "dir")
        out_dir = args.out or (
            Path(sweep_dir) if sweep_dir and Path(sweep_dir).is_dir() else Path(f"leaderboard-{parent_id[:8]}")
        )
    if board.is_empty():
        raise CadftError(f"{title}: no runs in {client.tracking_uri}")
    print_leaderboard(board, title=f"{title} ({client.tracking_uri})")
    files = publish(board, client, parent_id, out_dir.resolve(), title=title, html=args.html)
    if parent_id is not None:  # a sweep over train.max_train_examples is also a learning curve
        files += learning_curve.publish(
            sweep_runs(client, parent_id), client, parent_id, out_dir.resolve(), title, ARTIFACT_DIR
        )
    print(
        "\n".join(f"wrote {path}" for path in files)
        + (f"\nlogged to parent run {parent_id} under {ARTIFACT_DIR}/" if parent_id else "")
    )


if __name__ == "__main__":
    main()
