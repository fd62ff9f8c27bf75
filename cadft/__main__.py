"""`python -m cadft <command>`: the front door (cadft.cli)."""

from cadft.cli import main

main()
