"""The front door: `cadft <command> [arguments]`, one subcommand per stage; `cadft --help` lists them. Each command
is also installed as `cadft-<command>` (the same program)."""

from __future__ import annotations

import importlib
import sys

from cadft.quiet import quiet_libraries
from cadft.train.distributed import accept_local_rank_flag

# command -> (module in cadft.cli, one line of what it does)
COMMANDS = {
    "synth": ("synth", "write a synthetic UK Biobank-like extract and its oracle (the true risk per person)"),
    "prepare": (
        "prepare",
        "extract -> labels, features, text and split: the prepared table and its data card (cached)",
    ),
    "train": ("train", "fine-tune a language model on the prepared records, evaluate it, log it to MLflow (Hydra app)"),
    "eval": ("eval", "evaluate a trained run again: metrics, predictions, report.html"),
    "baselines": (
        "baselines",
        "the classical baselines (LR, LightGBM, PCE, age, zero-shot) on the same split and terms",
    ),
    "compare": ("compare", "a leaderboard of runs (a sweep or an experiment), ranked on validation"),
    "predict": ("predict", "apply a trained run to a new extract: calibrated 10-year risks"),
    "explain": ("explain", "which parts of each record moved a run's risks, beside the baselines and the true factors"),
    "sync": ("sync", "send a run recorded offline to its MLflow tracking server"),
    "ui": ("ui", "the MLflow UI on cadft's tracking store, bound to 127.0.0.1"),
    "config": ("config", "where the shipped configs are, or a copy of them to edit"),
}


quiet_libraries()


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: cadft <command> [arguments]   (cadft <command> --help: its own arguments)", "", "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    # The deepspeed launcher puts --local_rank=N right after the module, before the command (`--module cadft train`).
    accept_local_rank_flag(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(command, COMMANDS, n=1)
        print(
            f"cadft: error: {command}: no such command"
            + (f" (did you mean {close[0]}?)" if close else "")
            + f"; commands: {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        raise SystemExit(2)
    raise SystemExit(importlib.import_module(f"cadft.cli.{COMMANDS[command][0]}").main(rest) or 0)
