"""``python -m fedloop.cli``."""

from fedloop.cli.app import main

main()
