"""Package surface: sorted, complete ``__all__`` lists and a light ``import fedloop``."""

from __future__ import annotations
import __future__

import importlib
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import fedloop

SRC = Path(fedloop.__file__).resolve().parent
PACKAGES = sorted(
    ".".join(("fedloop", *init.parent.relative_to(SRC).parts)) for init in SRC.rglob("__init__.py")
)
HEAVY_MODULES = ("ray", "psycopg", "s3fs", "torch", "sqlalchemy")


def _isort_key(name: str) -> tuple[int, list[object]]:
    """Order names as ruff's RUF022 does: CONSTANTS, then Classes, then the rest, naturally."""
    if len(name) > 1 and re.fullmatch(r"[A-Z0-9_]+", name):
        group = 0
    elif name[:1].isupper():
        group = 1
    else:
        group = 2
    natural: list[object] = [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]
    return group, natural


def _public_names(module: types.ModuleType) -> set[str]:
    """Return the names a module defines or imports, less private names and submodules."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        # `from __future__ import annotations` is a compiler directive, not an export
        and not isinstance(value, __future__._Feature)
        and not (
            isinstance(value, types.ModuleType) and value.__name__.startswith(f"{module.__name__}.")
        )
    }


@pytest.mark.parametrize("package", [pytest.param(p, id=p) for p in PACKAGES])
def test_package_all_is_sorted(package: str) -> None:
    """Each package's __all__ is a list sorted the way ruff sorts it."""
    # Act
    module = importlib.import_module(package)

    # Assert
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, list), f"{package} has no __all__ list"
    assert exported == sorted(exported, key=_isort_key)


@pytest.mark.parametrize("package", [pytest.param(p, id=p) for p in PACKAGES])
def test_package_all_equals_public_names(package: str) -> None:
    """Each package's __all__ lists exactly its public names (lazy names must resolve)."""
    # Arrange
    module = importlib.import_module(package)
    exported = list(getattr(module, "__all__", []))
    lazy = {name for name in exported if name not in vars(module)}

    # Act
    public = _public_names(module)

    # Assert
    assert all(getattr(module, name, None) is not None for name in lazy)
    assert {n for n in exported if not n.startswith("_")} - lazy == public


def test_start_run_is_exported_lazily() -> None:
    """fedloop.start_run resolves to the tracking API."""
    # Arrange
    from fedloop.store.tracking import start_run

    # Act / Assert
    assert fedloop.start_run is start_run


def test_unknown_attribute_raises_attribute_error() -> None:
    """A name fedloop does not have raises AttributeError."""
    # Act / Assert
    with pytest.raises(AttributeError, match=r"no attribute 'nope'"):
        _ = fedloop.nope  # type: ignore[attr-defined]


def test_import_fedloop_is_light() -> None:
    """`import fedloop` in a fresh interpreter imports none of the heavy dependencies."""
    # Arrange
    code = (
        "import sys, fedloop\n"
        f"heavy = {HEAVY_MODULES!r}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )

    # Act
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )

    # Assert
    assert result.stdout.strip() == "[]"
