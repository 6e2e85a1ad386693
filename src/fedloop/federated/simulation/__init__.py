"""Simulation backends: many virtual clients on one machine with the same coordinator code."""

from fedloop.federated.simulation.local import LocalBackend

__all__ = ["LocalBackend"]
