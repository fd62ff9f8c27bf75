"""The configuration: the shipped config tree (`CONF_DIR`), its typed schema (`schema`), the one check that turns a
composed config into that typed form (`validate`) and the Hydra composition of a command line (`compose`)."""

from __future__ import annotations

from pathlib import Path


def _conf_dir() -> Path:
    """The shipped configs: `cadft/conf/` inside an installed wheel, else the top-level `conf/` of the clone cadft is
    installed from (editable). Absolute, so commands work from any folder."""
    package = Path(__file__).resolve().parent.parent
    packaged = package / "conf"
    return packaged if packaged.is_dir() else package.parent / "conf"


CONF_DIR = _conf_dir()
