"""Package attributes imported on first use (PEP 562), for exports that pull in heavy libraries."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, table: Mapping[str, str]) -> Callable[[str], Any]:
    """Return a module ``__getattr__`` that imports each name from its module when first asked.

    Parameters
    ----------
    package : str
        The package whose ``__getattr__`` this becomes (for the error message).
    table : Mapping[str, str]
        Exported name -> dotted module that defines it.

    Returns
    -------
    callable
        ``__getattr__(name)``: the attribute, or ``AttributeError`` for an unknown name.

    Example
    -------
    >>> __getattr__ = lazy_exports(__name__, {"RayBackend": "fedloop.federated.simulation.ray"})
    """

    def lazy_getattr(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return lazy_getattr
