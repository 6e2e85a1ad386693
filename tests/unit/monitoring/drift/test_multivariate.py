"""Domain classifier: joint changes found, identical distributions not flagged, bad shapes refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedloop.core import InvalidInput
from fedloop.monitoring.drift import domain_classifier_test


def test_same_distribution_is_not_flagged() -> None:
    """Two samples of one distribution give an AUC near 0.5 and no flag."""
    # Arrange
    rng = np.random.default_rng(0)
    reference, current = rng.normal(size=(2_000, 5)), rng.normal(size=(2_000, 5))

    # Act
    result = domain_classifier_test(reference, current)

    # Assert
    assert abs(result.auc - 0.5) < 0.05
    assert not result.drifted


def test_flipped_correlation_is_flagged() -> None:
    """A correlation that changes sign, marginals unchanged, is found."""
    # Arrange
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 2_000))
    reference = np.column_stack([a, a + 0.3 * rng.normal(size=2_000)])
    current = np.column_stack([b, -b + 0.3 * rng.normal(size=2_000)])

    # Act
    result = domain_classifier_test(reference, current, columns=["x", "y"])

    # Assert
    assert result.drifted
    assert result.auc > 0.9
    assert result.p_value < 1e-10
    assert result.columns == ("x", "y")


def test_rows_are_capped_and_nan_is_allowed() -> None:
    """Each side is subsampled to max_rows; NaN values are accepted."""
    # Arrange
    rng = np.random.default_rng(2)
    reference, current = rng.normal(size=(5_000, 3)), rng.normal(size=(300, 3))
    reference[::7, 0] = np.nan

    # Act
    result = domain_classifier_test(reference, current, max_rows=1_000)

    # Assert
    assert (result.reference_rows, result.current_rows) == (1_000, 300)
    assert json.loads(json.dumps(result.to_dict()))["method"] == "domain_classifier"


@pytest.mark.parametrize(
    ("reference", "current", "kwargs", "field"),
    [
        pytest.param((100, 3), (100, 4), {}, "current", id="widths"),
        pytest.param((5, 3), (100, 3), {}, "reference", id="too-few-rows"),
        pytest.param((100,), (100, 3), {}, "reference", id="one-d"),
        pytest.param((100, 3), (100, 3), {"columns": ["a"]}, "columns", id="names"),
        pytest.param((100, 3), (100, 3), {"min_auc": 0.2}, "min_auc", id="min-auc"),
        pytest.param((100, 3), (100, 3), {"max_rows": 5}, "max_rows", id="max-rows"),
    ],
)
def test_bad_input_names_the_field(
    reference: tuple[int, ...], current: tuple[int, ...], kwargs: dict[str, object], field: str
) -> None:
    """Malformed samples and parameters raise InvalidInput naming the field."""
    # Act / Assert
    with pytest.raises(InvalidInput, match=field) as err:
        domain_classifier_test(np.zeros(reference), np.zeros(current), **kwargs)  # type: ignore[arg-type]
    assert err.value.field == field
