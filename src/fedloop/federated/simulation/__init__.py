"""Simulation backends: many virtual clients on one machine with the same coordinator code.

``RayBackend`` is resolved on first use, so importing this package never imports Ray.
"""

from __future__ import annotations

import typing as _typing

from fedloop.federated.simulation.local import LocalBackend

__all__ = ["LocalBackend", "RayBackend"]

if _typing.TYPE_CHECKING:
    from fedloop.federated.simulation.ray import RayBackend


def __getattr__(name: str) -> _typing.Any:
    if name == "RayBackend":
        from fedloop.federated.simulation.ray import RayBackend

        return RayBackend
    raise AttributeError(f"module 'fedloop.federated.simulation' has no attribute {name!r}")
