"""Simulation backends: many virtual clients on one machine with the same coordinator code.

``RayBackend`` is resolved on first use, so importing this package never imports Ray.
"""

from __future__ import annotations

import typing as _typing

from fedloop.core import lazy_exports as _lazy_exports
from fedloop.federated.simulation.local import LocalBackend

__all__ = ["LocalBackend", "RayBackend"]

if _typing.TYPE_CHECKING:
    from fedloop.federated.simulation.ray import RayBackend


__getattr__ = _lazy_exports(__name__, {"RayBackend": "fedloop.federated.simulation.ray"})
