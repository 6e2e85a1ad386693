"""Optional dependencies: import them by name, on use, failing with the pip command."""

from __future__ import annotations

import importlib
from types import ModuleType

from fedloop.core.errors import MissingExtraError

__all__ = ["EXTRAS", "require"]

#: extra name -> the importable modules it provides
EXTRAS: dict[str, tuple[str, ...]] = {
    "postgres": ("psycopg",),
    "s3": ("s3fs",),
    "ray": ("ray",),
    "bench": ("psutil",),
}


def require(extra: str, *, feature: str, module: str | None = None) -> ModuleType:
    """Import the module behind an optional extra or raise :class:`MissingExtraError`.

    Parameters
    ----------
    extra : str
        Name of the extra in pyproject (``"postgres"``, ``"s3"``, ``"ray"``…).
    feature : str
        What the user asked for, for the message (``"Ray simulation"``).
    module : str or None, default None
        The module to import; defaults to the extra's first module.

    Returns
    -------
    ModuleType
        The imported module.

    Raises
    ------
    MissingExtraError
        When the module cannot be imported.
    """
    if module is None:
        if extra not in EXTRAS:
            raise ValueError(f"unknown extra {extra!r}; known: {', '.join(sorted(EXTRAS))}")
        module = EXTRAS[extra][0]
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(
            f"{feature} needs the optional package {module!r}, which is not installed.",
            field=extra,
            hint=f'Install it with: pip install "fedloop[{extra}]"',
        ) from err
