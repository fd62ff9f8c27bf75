"""cadft prepare: extract -> labels -> baseline features -> text -> split, as Parquet plus a data card
(cadft.data.prepare).

    cadft prepare data.path=FILE [data.format=auto|showcase|tab|rap|parquet|seed_json] [task=hard_cad]
                  [text=text|list] [paths.prepared_dir=DIR]

The result is cached under `paths.prepared_dir` (a sweep or a training run of the same settings reuses it); the
summary printed names the table, the data card and the counts per split.
"""

from __future__ import annotations

import os
import sys

from cadft.cli.common import hydra_app
from cadft.config.validate import validate, with_absolute_paths


def main(argv: list[str] | None = None) -> None:
    hydra_app("prepare", "prepare", _prepare, sys.argv[1:] if argv is None else list(argv))


def _prepare(cfg) -> None:
    from cadft.data.card import summary_lines
    from cadft.data.prepare import prepare

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    print("\n".join(summary_lines(prepare(with_absolute_paths(validate(cfg))))))


if __name__ == "__main__":
    main()
