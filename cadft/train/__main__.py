"""`python -m cadft.train`: `cadft train` for launchers that start a module (torchrun -m, deepspeed --module)."""

from cadft.cli.train import main

main()
