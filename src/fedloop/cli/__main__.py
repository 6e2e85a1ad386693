"""``python -m fedloop.cli``."""

from fedloop.cli.app import main

# Guarded: `fedloop serve --workers N` spawns workers that re-import the main module.
if __name__ == "__main__":
    main()
