"""cadft ui: the MLflow UI on cadft's tracking store (outputs/mlflow.db by default), bound to 127.0.0.1.

    cadft ui [--port 5000] [--tracking-uri URI]

Each experiment gets a saved view, "cadft", whose run table shows strategy, imbalance, ZeRO stage, backbone, the values
a sweep varied and the headline test metrics (cadft.tracking.ui); its URL is printed per experiment. Then `mlflow ui`
replaces this process, with one worker (the default four take seconds longer to start and gain nothing for one user).
"""

from __future__ import annotations

import argparse
import os
import sys

from cadft.cli.common import ArgumentParser, exit_on_user_error, prog_name
from cadft.tracking.store import default_tracking_uri
from cadft.tracking.ui import add_views, experiment_url


def main(argv: list[str] | None = None) -> None:
    prog = prog_name("ui")
    exit_on_user_error(prog)(_main)(prog, sys.argv[1:] if argv is None else argv)


def _main(prog: str, argv: list[str]) -> None:
    from cadft.tracking.sqlite_store import client_for

    parser = ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--tracking-uri", help="MLflow store (default: cadft train's, sqlite:///<outputs>/mlflow.db)")
    args = parser.parse_args(argv)
    uri = args.tracking_uri or default_tracking_uri()
    base = f"http://127.0.0.1:{args.port}"
    experiments = add_views(client_for(uri))  # a new store is migrated before the server opens it
    print(f"MLflow UI on {uri}: {base}  (Ctrl-C stops it)")
    for name, experiment_id in experiments.items():
        print(f"  {name}: {experiment_url(base, experiment_id)}")
    sys.stdout.flush()
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(args.port),
        "--workers",
        "1",
    ]
    os.execv(sys.executable, command)


if __name__ == "__main__":
    main()
