"""The front door: `cadft --help` lists every command, each command runs through `cadft <command>` and through its
`cadft-<command>` alias, and a mistake names the program as the user typed it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cadft.cli import COMMANDS
from tests.conftest import CADFT

BIN = Path(sys.executable).parent


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=120)


def test_help_lists_every_command_in_a_line(tmp_path):
    done = run([*CADFT, "--help"], tmp_path)
    assert done.returncode == 0
    listed = [line.split()[0] for line in done.stdout.splitlines() if line.startswith("  ")]
    assert listed == list(COMMANDS)
    for name, (_, summary) in COMMANDS.items():
        assert f"{name}  " in done.stdout and summary in done.stdout


def test_an_unknown_command_is_one_line_with_a_suggestion(tmp_path):
    done = run([*CADFT, "trian"], tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"cadft: error: trian: no such command (did you mean train?); commands: {', '.join(COMMANDS)}"
    ]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_and_its_alias_answer_help(tmp_path, command):
    front = run([*CADFT, command, "--help"], tmp_path)
    alias = run([str(BIN / f"cadft-{command}"), "--help"], tmp_path)
    assert front.returncode == alias.returncode == 0, front.stderr + alias.stderr
    assert front.stdout.strip() and alias.stdout.strip()


def test_a_mistake_names_the_program_as_typed(tmp_path):
    front = run([*CADFT, "train", "model=qlor"], tmp_path)
    alias = run([str(BIN / "cadft-train"), "model=qlor"], tmp_path)
    message = "model=qlor: no such option of model; allowed: full, lora, qlora (did you mean qlora?)"
    assert (front.returncode, front.stderr.strip()) == (2, f"cadft train: error: {message}")
    assert (alias.returncode, alias.stderr.strip()) == (2, f"cadft-train: error: {message}")
