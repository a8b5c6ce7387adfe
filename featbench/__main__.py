"""``python -m featbench`` runs the command line."""

from .cli import main

main(prog_name="featbench")
