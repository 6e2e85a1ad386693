"""The ``fedloop`` command line: one module per noun, thin over the packages below it."""

from fedloop.cli.app import app, main

__all__ = ["app", "main"]
