"""cadft sync: send a run recorded offline to its MLflow tracking server, once the server is back (cadft.tracking.sync).

    cadft sync RUN_DIR [--tracking-uri URI] [--killed]

A run whose process was killed outright (SIGKILL, out of memory) is left RUNNING offline: --killed sends it as KILLED.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cadft.cli.common import ArgumentParser, exit_on_user_error, prog_name
from cadft.errors import CadftError
from cadft.layout import RUN_RECORD
from cadft.tracking.record import read_record
from cadft.tracking.sync import sync


def main(argv: list[str] | None = None) -> None:
    prog = prog_name("sync")
    exit_on_user_error(prog)(_main)(prog, sys.argv[1:] if argv is None else argv)


def _main(prog: str, argv: list[str]) -> None:
    parser = ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "run_dir", type=Path, help="a cadft-train run dir (holds mlflow_run.json and mlflow_offline.db)"
    )
    parser.add_argument("--tracking-uri", help="the server to send to (default: the run's, in mlflow_run.json)")
    parser.add_argument("--killed", action="store_true", help="send a run left RUNNING by a killed process as KILLED")
    args = parser.parse_args(argv)
    if not (args.run_dir / RUN_RECORD).is_file():
        raise CadftError(f"{args.run_dir}: not a cadft run dir ({RUN_RECORD} is missing)")
    sent = sync(args.run_dir.resolve(), args.tracking_uri, killed=args.killed)
    record = read_record(args.run_dir)
    if sent is None:
        print(
            f"{args.run_dir}: already synced to run {record['offline']['server_run_id']} at "
            f"{record['offline']['synced_to']}; nothing to do"
        )
        return
    print(
        f"synced {args.run_dir} to {'new ' if sent['new_run'] else ''}run {sent['run_id']} at "
        f"{record['tracking_uri']}: "
        f"{sent['params']} params, {sent['metric_values']} metric values, {sent['artifacts']} artifact files, "
        f"{sent['status']}"
    )


if __name__ == "__main__":
    main()
