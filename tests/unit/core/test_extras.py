"""Optional dependencies: imported on use, failing with the pip command."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from fedloop.core import MissingExtraError, require
from fedloop.core.extras import EXTRAS

PYPROJECT = Path(__file__).resolve().parents[3] / "pyproject.toml"


@pytest.mark.parametrize("extra", [pytest.param(name, id=name) for name in sorted(EXTRAS)])
def test_missing_module_raises_missing_extra_error(
    monkeypatch: pytest.MonkeyPatch, extra: str
) -> None:
    """A missing optional module raises MissingExtraError with the pip command for its extra."""
    # Arrange
    monkeypatch.setitem(sys.modules, EXTRAS[extra][0], None)  # makes the import fail

    # Act / Assert
    with pytest.raises(MissingExtraError, match=rf'pip install "fedloop\[{extra}\]"') as info:
        require(extra, feature="A test feature")
    assert info.value.field == extra
    assert isinstance(info.value, ImportError)
    assert "A test feature" in str(info.value)


def test_explicit_missing_module_raises_missing_extra_error() -> None:
    """An explicit module that cannot be imported names the module and the extra."""
    # Act / Assert
    with pytest.raises(MissingExtraError, match=r"fedloop_no_such_module") as info:
        require("ray", feature="Ray simulation", module="fedloop_no_such_module")
    assert info.value.hint == 'Install it with: pip install "fedloop[ray]"'


def test_installed_module_is_returned() -> None:
    """An importable module is returned."""
    # Act
    module = require("bench", feature="Benchmarks", module="json")

    # Assert
    assert module.__name__ == "json"


def test_unknown_extra_raises_value_error() -> None:
    """An extra name that fedloop does not define is a programming error."""
    # Act / Assert
    with pytest.raises(ValueError, match=r"unknown extra 'gpu'"):
        require("gpu", feature="GPU")


@pytest.mark.parametrize("extra", [pytest.param(name, id=name) for name in sorted(EXTRAS)])
def test_extra_is_declared_in_pyproject(extra: str) -> None:
    """Every extra that require() names exists in pyproject's optional dependencies."""
    # Arrange
    declared = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]

    # Act / Assert
    assert extra in declared
