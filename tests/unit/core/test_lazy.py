"""lazy_exports: package attributes imported on first use."""

from __future__ import annotations

import sys

import pytest

from fedloop.core import lazy_exports


def test_lazy_export_imports_its_module_on_first_use() -> None:
    """A listed name comes from its module, which is imported only when the name is asked for."""
    # Arrange
    sys.modules.pop("colorsys", None)
    getattr_ = lazy_exports("pkg", {"rgb_to_hsv": "colorsys"})
    assert "colorsys" not in sys.modules

    # Act
    func = getattr_("rgb_to_hsv")

    # Assert
    assert func(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)
    assert "colorsys" in sys.modules


def test_unknown_name_is_an_attribute_error_naming_the_package() -> None:
    """A name not in the table raises AttributeError, as a missing module attribute does."""
    # Act / Assert
    with pytest.raises(AttributeError, match=r"module 'pkg' has no attribute 'nope'"):
        lazy_exports("pkg", {})("nope")
