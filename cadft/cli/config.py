"""cadft config: where the shipped configs are, what each group offers, or a copy of them to start your own.

    cadft config                 # the config folder and, per group, its options
    cadft config --copy DIR      # copy the shipped config tree into DIR

Every command composes its config from the shipped tree (the top-level conf/ of a clone, or cadft/conf inside an
installed package). To add an option of your own (a new phenotype, a backbone preset), write it under a NEW name in a
folder of yours, e.g. DIR/task/my_cad.yaml (start from a copy), and select it with
`cadft train --config-dir DIR task=my_cad`. Hydra searches --config-dir after the shipped tree, so a file there with a
shipped file's name is ignored: give your options their own names.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from cadft.cli.common import ArgumentParser, exit_on_user_error, prog_name
from cadft.config import CONF_DIR
from cadft.errors import CadftError


def main(argv: list[str] | None = None) -> None:
    prog = prog_name("config")
    exit_on_user_error(prog)(_main)(prog, sys.argv[1:] if argv is None else argv)


def groups() -> dict[str, list[str]]:
    """Each config group of the shipped tree and its options (file names without .yaml)."""
    return {
        folder.name: sorted(path.stem for path in folder.glob("*.yaml"))
        for folder in sorted(CONF_DIR.iterdir())
        if folder.is_dir() and any(folder.glob("*.yaml"))
    }


def _main(prog: str, argv: list[str]) -> None:
    parser = ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--copy", type=Path, metavar="DIR", help="copy the shipped config tree into DIR (which must not exist yet)"
    )
    args = parser.parse_args(argv)
    if args.copy is not None:
        if args.copy.exists():
            raise CadftError(f"--copy {args.copy}: already exists; give a new folder")
        shutil.copytree(CONF_DIR, args.copy, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
        print(f"copied {CONF_DIR} to {args.copy}; add options under new names and pass --config-dir {args.copy}")
        return
    print(f"shipped configs: {CONF_DIR}")
    for group, options in groups().items():
        print(f"  {group}: {', '.join(options)}")
