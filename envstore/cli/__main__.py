"""``python -m envstore.cli``."""

from envstore.cli import main

main(prog_name="envstore")
