"""What every command shares: user errors as one clear line and exit status 2 (a disk that is full or cannot be
written included), SIGTERM and SIGINT as one line and exit status 128 + the signal after the command has cleaned up
(its MLflow run ended KILLED, temporary files removed), the program's name as the user typed it (`cadft train` or the
alias `cadft-train`), and the Hydra apps' start (config checked before Hydra runs)."""

from __future__ import annotations

import argparse
import functools
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from cadft.errors import CadftError
from cadft.files import write_failure
from cadft.progress import close_open_bars


class Stopped(KeyboardInterrupt):
    """A stop signal, raised where the command is (as Ctrl-C's KeyboardInterrupt is), so that every `finally` and
    `except KeyboardInterrupt` runs: MLflow runs end KILLED, staging folders and temporary files go."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by signal {signal.Signals(signum).name}")
        self.signum = signum


def _raise_stopped(signum, frame) -> None:
    raise Stopped(signum)


def stop_on_signals() -> None:
    """SIGTERM (kill, torchrun, sbatch, a scheduler) and SIGINT (Ctrl-C, also where a shell started the command in
    the background with SIGINT ignored) stop the command as Ctrl-C does. Main thread only, as Python requires."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _raise_stopped)


def prog_name(command: str) -> str:
    """`cadft-train` when run through that alias, else `cadft train` (the front door, python -m, a launcher)."""
    alias = f"cadft-{command}"
    return alias if Path(sys.argv[0]).name == alias else f"cadft {command}"


def exit_on_user_error(prog: str):
    """Wrap a command's body so a CadftError prints `prog: error: message` (no traceback) and exits 2."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except CadftError as err:
                logging.getLogger(prog).debug("user error", exc_info=True)
                print(f"{prog}: error: {err}", file=sys.stderr)
                raise SystemExit(2) from None
            except KeyboardInterrupt as err:
                signum = err.signum if isinstance(err, Stopped) else signal.SIGINT
                close_open_bars()
                print(f"{prog}: {err or 'stopped by Ctrl-C'} (nothing half-written was left)", file=sys.stderr)
                raise SystemExit(128 + signum) from None
            except Exception as err:
                failure = write_failure(err)  # a full disk, a folder without permission: the path and the errno
                if failure is None:
                    raise
                logging.getLogger(prog).debug("write failure", exc_info=True)
                print(f"{prog}: error: {failure}", file=sys.stderr)
                raise SystemExit(2) from None

        return wrapper

    return decorate


class ArgumentParser(argparse.ArgumentParser):
    """argparse with its errors on one line (`prog: error: ...`, exit 2), without the usage text before them."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def hydra_app(
    command: str,
    config_name: str,
    task: Callable,
    argv: list[str],
    before_hydra: Callable[[list[str]], None] | None = None,
) -> None:
    """Run `task(cfg)` as the Hydra app `command` on the shipped config `config_name`: the command line is composed and
    checked first (one line and exit 2 on a mistake, cadft.config.compose), `before_hydra(argv)` may edit it, then Hydra
    runs the task (a run or a sweep) with CadftErrors as one line. Each app's YAML names its job after the command
    (hydra.job.name), so Hydra's log is <run dir>/<command>.log."""
    import hydra

    from cadft.config import CONF_DIR
    from cadft.config.compose import check_command_line, quote_stage_choices

    prog = prog_name(command)
    quote_stage_choices(argv)
    check_command_line(prog, config_name, argv)
    if before_hydra is not None:
        before_hydra(argv)
    sys.argv = [sys.argv[0], *argv]
    hydra.main(config_path=str(CONF_DIR), config_name=config_name, version_base="1.3")(exit_on_user_error(prog)(task))()
