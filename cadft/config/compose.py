"""Hydra composition checked before Hydra runs: `check_command_line` composes the config of a command line as Hydra will
and validates it (cadft.config.validate), so a mistake stops within seconds, before Hydra creates the run dir, data
is read or transformers is imported, with one line such as

    cadft train: error: model=qlor: no such option of model; allowed: full, lora, qlora (did you mean qlora?)

`compose` gives the shipped config with overrides (tools outside a run: the default tracking store).
"""

from __future__ import annotations

import difflib
import re
import sys
from collections import Counter
from pathlib import Path

from cadft.config import CONF_DIR
from cadft.errors import CadftError

ZERO_OVERRIDE = "zero="
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def quote_stage_choices(argv: list[str]) -> None:
    """`zero=2` -> `zero='2'` in argv, in place: Hydra reads a bare 2 as an integer and refuses it as a config-group
    choice ("Config group override must be a string or a list. Got int"). Also for sweeps: `zero=none,2,3`."""
    for i, arg in enumerate(argv):
        if arg.startswith(ZERO_OVERRIDE):
            choices = arg.removeprefix(ZERO_OVERRIDE).split(",")
            argv[i] = ZERO_OVERRIDE + ",".join(f"'{c}'" if c.isdigit() else c for c in choices)


def check_command_line(prog: str, config_name: str, argv: list[str]) -> None:
    """Compose the config of a Hydra app's command line (argv without the program) and validate it; exit 2 with one
    line on a mistake, or when data.path is not a file. A sweep (-m, or a template's hydra.mode=MULTIRUN) has every job
    composed (an unknown option
    or key stops it here), but its values are validated when each job runs, so that a bad job is recorded FAILED
    and the others run (cadft.train.run). --help, --cfg, --info and shell completion are Hydra's own."""
    try:
        _check_command_line(config_name, argv)
    except CadftError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def _check_command_line(config_name: str, argv: list[str]) -> None:
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path, get_args_parser
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from cadft.config.validate import validate

    args, unknown = get_args_parser().parse_known_args(argv)
    if unknown:
        raise CadftError(f"unrecognized arguments: {' '.join(unknown)} (see --help)")
    if (
        args.help
        or args.hydra_help
        or args.cfg
        or args.info
        or args.shell_completion
        or args.experimental_rerun
        or args.config_path
    ):
        return
    overrides = list(args.overrides)
    _parse_each(overrides)
    search_path = create_config_search_path(str(CONF_DIR))
    if args.config_dir is not None:
        config_dir = Path(args.config_dir).resolve()
        if not config_dir.is_dir():
            raise CadftError(f"--config-dir {args.config_dir}: no such folder")
        search_path.prepend(
            provider="command-line", path=f"file://{config_dir}", anchor=SearchPathQuery(provider="schema")
        )
    name = args.config_name or config_name
    GlobalHydra.instance().clear()
    hydra = Hydra.create_main_hydra2(task_name="cadft", config_search_path=search_path)
    try:
        multirun = args.multirun or hydra.get_mode(config_name=name, overrides=overrides) == RunMode.MULTIRUN
        cfg = _composed(
            lambda: hydra.compose_config(
                name, overrides, run_mode=RunMode.MULTIRUN if multirun else RunMode.RUN, with_log_configuration=False
            )
        )
        _refuse_repeated_groups(overrides, cfg)
        if not multirun:
            validate(cfg)
            _check_data_file(cfg)
            return
        for job in _sweep_jobs(cfg):
            _composed(lambda job=job: hydra.config_loader.load_sweep_config(cfg, job))
    finally:
        GlobalHydra.instance().clear()


def _parse_each(overrides: list[str]) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for override in overrides:
        try:
            parser.parse_override(override)
        except HydraException as err:
            raise CadftError(
                f"{override}: not a valid override ({_one_line(err)}); "
                "see https://hydra.cc/docs/advanced/override_grammar/basic/"
            ) from None


def _composed(make):
    """make(), with Hydra's composition errors as one-line CadftErrors."""
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    from cadft.config.validate import unknown_key_message

    try:
        return make()
    except MissingConfigException as err:
        missing = str(err.missing_cfg_file or "")
        if err.options is None or "/" not in missing:
            raise CadftError(_one_line(err)) from None
        group, option = missing.rsplit("/", 1)
        close = difflib.get_close_matches(option, err.options, n=1)
        raise CadftError(
            f"{group}={option}: no such option of {group}; allowed: {', '.join(err.options)}"
            + (f" (did you mean {close[0]}?)" if close else "")
        ) from None
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        key = re.match(r"Could not override '([^']+)'", str(err))
        unknown = unknown_key_message(key.group(1)) if key else None
        sweep = re.match(r"Ambiguous value for argument '([^']+)'", str(err))
        if sweep:
            raise CadftError(
                f"{sweep.group(1)}: several values sweep only with -m; a list is key=[a,b], text with a comma "
                "is quoted: key='a,b'"
            ) from None
        raise CadftError(unknown or _one_line(err)) from None


def _refuse_repeated_groups(overrides: list[str], cfg) -> None:
    """`model=lora model=full`: Hydra would take the last; a group is chosen once."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    groups = set(cfg.hydra.runtime.choices)
    chosen = [
        o for o in OverridesParser.create().parse_overrides(overrides) if o.key_or_group in groups and not o.is_delete()
    ]
    repeated = [group for group, count in Counter(o.key_or_group for o in chosen).items() if count > 1]
    if repeated:
        given = " ".join(o.input_line for o in chosen if o.key_or_group == repeated[0])
        raise CadftError(f"{given}: the group {repeated[0]} is given more than once; choose one option")


def _check_data_file(cfg) -> None:
    """The extract every Hydra app prepares from (a sweep's jobs may each name their own: they check it when
    they run)."""
    if not Path(str(cfg.data.path)).expanduser().is_file():
        raise CadftError(f"data.path={cfg.data.path}: no such file")


def _sweep_jobs(cfg) -> list[list[str]]:
    """The overrides of each job of a sweep, as Hydra's basic sweeper makes them (none for other sweepers)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if cfg.hydra.sweeper.get("_target_") != BASIC_SWEEPER:
        return []
    params = [f"{key}={value}" for key, value in (cfg.hydra.sweeper.get("params") or {}).items()]
    parsed = OverridesParser.create().parse_overrides(params + list(cfg.hydra.overrides.task))
    return BasicSweeper.split_arguments(parsed, None)[0]


def _one_line(err: Exception) -> str:
    """An error's message on one line, without Hydra's search-path listing and its stack-trace hint."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    cut = next(
        (i for i, line in enumerate(lines) if line.startswith(("Config search path", "Set the environment variable"))),
        len(lines),
    )
    return "; ".join(lines[:cut]) or type(err).__name__


def compose(config_name: str = "config", overrides: list[str] = ()):
    """The shipped config composed with overrides (a DictConfig, not validated); inside a running Hydra app (a
    stage of cadft train asking for a shipped option) with that app's search path."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return hydra_compose(config_name, overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name, overrides=list(overrides))
