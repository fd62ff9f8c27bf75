"""`cadft synth`: write a synthetic UK Biobank-like extract and its oracle (the true risk per person)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cadft.cli.common import prog_name
from cadft.synth.simulate import simulate
from cadft.synth.write import CODINGS, FORMATS, MULTI_CELLS, PARQUET_NAMINGS, Layout, default_oracle_path, write_cohort


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog_name("synth"),
        description="Write a synthetic UK Biobank-like extract (same layouts as real extracts) and, in a "
        "separate file, the oracle: eid, prevalent hard CAD, the true 10-year incident risk, the simulated outcome.",
    )
    parser.add_argument("--n", type=int, default=20_000, help="participants (default 20000; UKB has ~502000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives byte-identical files")
    parser.add_argument("--format", choices=FORMATS, default="showcase", help="extract layout (default showcase)")
    parser.add_argument("--coding", choices=CODINGS, default="raw", help="raw codes or REPLACE labels (default raw)")
    parser.add_argument(
        "--multi-cell", choices=MULTI_CELLS, default="json",
        help="rap: multi-select cells as a JSON list or pipe-joined (default json); parquet uses list columns",
    )  # fmt: skip
    parser.add_argument(
        "--parquet-naming", choices=PARQUET_NAMINGS, default="showcase", help="parquet column names (default showcase)"
    )
    parser.add_argument("--out", type=Path, required=True, help="extract file to write")
    parser.add_argument("--oracle", type=Path, help="oracle file (default: <stem>.oracle.csv next to --out)")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"--n must be at least 1, got {args.n}")
    args.oracle = args.oracle or default_oracle_path(args.out)
    if args.oracle.resolve() == args.out.resolve():
        parser.error("--oracle must differ from --out: the oracle never goes inside the extract")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    layout = Layout(args.format, args.coding, args.multi_cell, args.parquet_naming)
    started = time.perf_counter()
    sim = simulate(args.n, args.seed)
    try:
        write_cohort(sim, args.out, args.oracle, layout)
    except OSError as error:
        print(f"{prog_name('synth')}: could not write {args.out} and {args.oracle}: {error}", file=sys.stderr)
        return 1
    print(f"extract: {args.out}  ({args.format}, {args.coding}{_cell_note(layout)})")
    print(f"oracle:  {args.oracle}")
    print(f"{sim.summary()}  [{time.perf_counter() - started:.1f} s]")
    return 0


def _cell_note(layout: Layout) -> str:
    if layout.format == "rap":
        return f", multi-select cells {layout.multi_cell}"
    if layout.format == "parquet":
        return f", {layout.parquet_naming} names"
    return ""


if __name__ == "__main__":
    sys.exit(main())
