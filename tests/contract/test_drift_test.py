"""Contract of every DriftTest: quiet on identical data, loud on a large shift, fair both ways."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedloop.core import InvalidInput
from fedloop.learn.profiles import (
    CategoricalSummary,
    ColumnSummary,
    NumericSummary,
    profile_columns,
    profile_like,
)
from fedloop.monitoring.drift import DRIFT_TESTS, DriftTest

#: Categories of the categorical cases; the Z-test sees the first two only.
CATEGORIES = np.array(["a", "b", "c", "d", "e"], dtype=object)
#: The default threshold each test's effect must clear on a large shift (DriftConfig).
THRESHOLDS = {"psi": 0.2}

Pair = tuple[ColumnSummary, ColumnSummary]
MakePair = Callable[..., Pair]
Case = tuple[DriftTest, str, MakePair]


def _pair(reference: np.ndarray, current: np.ndarray, *, kind: str) -> Pair:
    """Return the reference summary and the current one on its edges or categories."""
    ref = profile_columns({"x": reference}, categorical=["x"] if kind == "categorical" else [])
    cur = profile_like(ref, {"x": current})
    return ref.columns["x"], cur.columns["x"]


def _draw(name: str, kind: str, shift: float, rows: int, rng: np.random.Generator) -> np.ndarray:
    """Draw one side: ``shift`` moves a normal mean, a binary rate or the category weights."""
    if name == "ztest":
        hits = rng.random(rows) < 0.2 + 0.3 * shift
        hits[:2] = (True, False)  # both values present, whatever the draw
        return CATEGORIES[hits.astype(int)] if kind == "categorical" else hits.astype(float)
    if kind == "categorical":
        weights = np.array([5.0, 4.0, 3.0, 2.0, 1.0]) ** (1 - 2 * shift)
        return rng.choice(CATEGORIES, size=rows, p=weights / weights.sum())
    return rng.normal(shift, 1.0, size=rows)


@pytest.fixture(
    params=[
        pytest.param((name, kind), id=f"{name}-{kind}")
        for name, test in DRIFT_TESTS.items()
        for kind in sorted(test.kinds)
    ]
)
def case(request: pytest.FixtureRequest) -> Case:
    """Return a drift test, the summary kind it is fed, and a maker of (reference, current)."""
    name, kind = request.param

    def make(reference_shift: float, current_shift: float, *, rows: int = 2_000, seed: int = 0):
        rng = np.random.default_rng(seed)
        return _pair(
            _draw(name, kind, reference_shift, rows, rng),
            _draw(name, kind, current_shift, rows, rng),
            kind=kind,
        )

    return DRIFT_TESTS[name], kind, make


def test_is_a_drift_test(case: Case) -> None:
    """Each implementation satisfies the DriftTest protocol under its registered name."""
    # Arrange
    test, kind, _ = case

    # Act / Assert
    assert isinstance(test, DriftTest)
    assert DRIFT_TESTS[test.name] is test
    assert kind in test.kinds


# `case` is a stateless (test, kind, maker) triple, so sharing it across examples is safe.
@settings(
    derandomize=True,
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(30, 3_000))
def test_identical_samples_are_not_flagged(case: Case, seed: int, rows: int) -> None:
    """The same sample on both sides has zero effect and a p-value of 1 (or none)."""
    # Arrange
    test, kind, _ = case
    values = _draw(test.name, kind, 0.0, rows, np.random.default_rng(seed))
    reference, current = _pair(values, values.copy(), kind=kind)

    # Act
    result = test(reference, current, column="x")

    # Assert
    assert result.statistic == pytest.approx(0.0, abs=1e-12)
    assert result.effect == pytest.approx(0.0, abs=1e-12)
    assert result.p_value is None or result.p_value == pytest.approx(1.0)


def test_large_shift_is_flagged(case: Case) -> None:
    """A large shift gives a tiny p-value and an effect well past threshold plus noise."""
    # Arrange
    test, _, make = case
    reference, current = make(0.0, 1.0)

    # Act
    result = test(reference, current, column="x")

    # Assert
    assert result.p_value is None or result.p_value < 1e-6
    assert result.effect >= THRESHOLDS.get(test.name, 0.1) + result.effect_noise


def test_swapping_sides_gives_a_similar_statistic(case: Case) -> None:
    """Reference and current swapped: the statistic's size changes by under 25%."""
    # Arrange
    test, _, make = case
    reference, current = make(0.0, 0.5)
    swapped_current, swapped_reference = make(0.5, 0.0)

    # Act
    forward = test(reference, current, column="x")
    backward = test(swapped_current, swapped_reference, column="x")

    # Assert
    assert abs(backward.statistic) == pytest.approx(abs(forward.statistic), rel=0.25)


def test_noise_estimates_the_effect_under_no_drift(case: Case) -> None:
    """Over repeated same-distribution draws the mean effect is close to effect_noise."""
    # Arrange
    test, _, make = case
    results = [test(*make(0.0, 0.0, rows=1_000, seed=s), column="x") for s in range(60)]

    # Act
    ratio = np.mean([r.effect for r in results]) / np.mean([r.effect_noise for r in results])

    # Assert
    print(f"{test.name}: mean effect / effect_noise = {ratio:.2f}")
    assert 0.7 < ratio < 1.3


def test_result_is_json_ready(case: Case) -> None:
    """TestResult.to_dict() serialises with json."""
    # Arrange
    test, _, make = case

    # Act
    data = test(*make(0.0, 0.3), column="x").to_dict()

    # Assert
    assert json.loads(json.dumps(data, allow_nan=False))["test"] == test.name


def test_other_kind_on_one_side_names_the_column(case: Case) -> None:
    """A numeric reference with a categorical current raises InvalidInput naming the column."""
    # Arrange
    test, _, _ = case
    numeric = profile_columns({"x": np.arange(100.0) % 2}).columns["x"]
    categorical = profile_columns({"x": np.array(["a", "b"] * 50)}, categorical=["x"]).columns["x"]

    # Act / Assert
    with pytest.raises(InvalidInput, match=r"'amount'") as err:
        test(numeric, categorical, column="amount")
    assert err.value.field == "amount"


def _empty_like(summary: ColumnSummary) -> ColumnSummary:
    """Return a summary of the same kind (and edges) that counts no rows, only missing ones."""
    if isinstance(summary, NumericSummary):
        return NumericSummary(
            edges=summary.edges,
            counts=np.zeros_like(summary.counts),
            count=0,
            missing=10,
            mean=0.0,
            m2=0.0,
            minimum=float("inf"),
            maximum=float("-inf"),
        )
    return CategoricalSummary(categories=(), counts=np.zeros(0, dtype=np.int64), missing=10)


def test_empty_current_names_the_column(case: Case) -> None:
    """A current summary with no rows raises InvalidInput naming the column."""
    # Arrange
    test, _, make = case
    reference, _ = make(0.0, 0.0)

    # Act / Assert
    with pytest.raises(InvalidInput, match=r"'amount'.*no rows") as err:
        test(reference, _empty_like(reference), column="amount")
    assert err.value.field == "amount"


def test_other_edges_name_the_column(case: Case) -> None:
    """A numeric current summary on other edges raises InvalidInput naming the column."""
    # Arrange
    test, kind, make = case
    if kind != "numeric":
        pytest.skip("categorical summaries have no edges")
    reference, current = make(0.0, 0.0)
    assert isinstance(current, NumericSummary)
    shifted = replace(current, edges=current.edges + 1e-3)

    # Act / Assert
    with pytest.raises(InvalidInput, match=r"'amount'.*edges") as err:
        test(reference, shifted, column="amount")
    assert err.value.field == "amount"


def test_unread_kind_names_the_column(case: Case) -> None:
    """A test fed a summary kind it does not read raises InvalidInput naming the column."""
    # Arrange
    test, _, _ = case
    if test.kinds >= {"numeric", "categorical"}:
        pytest.skip(f"{test.name} reads both kinds")
    summary = profile_columns({"x": np.array(["a", "b", "c"] * 20)}, categorical=["x"]).columns["x"]

    # Act / Assert
    with pytest.raises(InvalidInput, match=r"'amount'.*does not read categorical") as err:
        test(summary, summary, column="amount")
    assert err.value.field == "amount"


def test_malformed_counts_name_the_column(case: Case) -> None:
    """Negative counts raise InvalidInput naming the column."""
    # Arrange
    test, _, make = case
    reference, current = make(0.0, 0.0)
    counts = current.counts.copy()
    counts[0] = -1
    if isinstance(current, NumericSummary):
        broken = replace(current, counts=counts, count=int(counts.sum()))
    else:
        broken = replace(current, counts=counts)

    # Act / Assert
    with pytest.raises(InvalidInput, match=r"'amount'.*negative") as err:
        test(reference, broken, column="amount")
    assert err.value.field == "amount"
