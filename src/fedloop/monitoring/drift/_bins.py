"""Validation and alignment of two column summaries into paired count vectors."""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import numpy.typing as npt

from fedloop.core.errors import InvalidInput
from fedloop.learn.profiles import CategoricalSummary, ColumnSummary, NumericSummary

Counts = npt.NDArray[np.float64]

# Relative tolerance of the "all values sit at min or max" check: the variance of values in
# [lo, hi] equals (mean - lo)(hi - mean) exactly when every value is lo or hi.
_BINARY_RTOL = 1e-9


def total(summary: ColumnSummary) -> int:
    """Return the rows a summary counts (finite values or categorised rows)."""
    if isinstance(summary, NumericSummary):
        return int(summary.count)
    return int(summary.counts.sum())


def _malformed(column: str, side: str, problem: str) -> InvalidInput:
    return InvalidInput(
        f"column {column!r}: the {side} summary {problem}.",
        field=column,
        hint="Build summaries with fedloop.learn.profiles (current ones with profile_like).",
    )


def _check_summary(summary: ColumnSummary, *, column: str, side: str) -> None:
    counts = np.asarray(summary.counts)
    # A categorical column whose values were all missing has no categories at all.
    if counts.ndim != 1 or (counts.size == 0 and isinstance(summary, NumericSummary)):
        raise _malformed(column, side, f"needs a non-empty 1-D counts array; got {counts.shape}")
    if np.any(counts < 0):
        raise _malformed(column, side, "has negative counts")
    if isinstance(summary, NumericSummary):
        edges = np.asarray(summary.edges)
        if edges.ndim != 1 or edges.size + 1 != counts.size:
            raise _malformed(
                column, side, f"has {counts.size} bins but {edges.size} interior edges (need B - 1)"
            )
        if int(counts.sum()) != summary.count:
            raise _malformed(
                column, side, f"counts {int(counts.sum())} values in bins but count={summary.count}"
            )
    elif len(summary.categories) != counts.size:
        raise _malformed(
            column, side, f"has {counts.size} counts for {len(summary.categories)} categories"
        )


def check_alike(reference: ColumnSummary, current: ColumnSummary, *, column: str) -> None:
    """Raise InvalidInput unless both summaries are well formed, of one kind and on one set of edges."""
    if reference.kind != current.kind:
        raise InvalidInput(
            f"column {column!r} is {reference.kind} in the reference but {current.kind} "
            "in the current profile.",
            field=column,
            value=current.kind,
            hint="Profile the current data with profile_like(reference, ...) so kinds match.",
        )
    _check_summary(reference, column=column, side="reference")
    _check_summary(current, column=column, side="current")
    if (
        isinstance(reference, NumericSummary)
        and isinstance(current, NumericSummary)
        and not np.array_equal(reference.edges, current.edges)
    ):
        raise InvalidInput(
            f"column {column!r}: the current summary is not on the reference's bin edges "
            f"({current.edges.size} vs {reference.edges.size} edges, or other values).",
            field=column,
            hint="Profile the current data with profile_like(reference, ...).",
        )


def check_pair(
    reference: ColumnSummary,
    current: ColumnSummary,
    *,
    column: str,
    test: str,
    kinds: Collection[str],
) -> None:
    """Raise InvalidInput unless :func:`check_alike` holds, the kind is in ``kinds`` and both have rows."""
    check_alike(reference, current, column=column)
    if reference.kind not in kinds:
        raise InvalidInput(
            f"column {column!r}: the {test} test does not read {reference.kind} columns "
            f"(it reads {', '.join(sorted(kinds))}).",
            field=column,
            value=reference.kind,
            hint="Pick a test for this kind in DriftConfig or leave it on 'auto'.",
        )
    for side, summary in (("reference", reference), ("current", current)):
        if total(summary) <= 0:
            raise InvalidInput(
                f"column {column!r}: the {side} summary has no rows.",
                field=column,
                hint="A drift test needs rows on both sides; check_drift skips such columns.",
            )


def paired_counts(reference: ColumnSummary, current: ColumnSummary) -> tuple[Counts, Counts]:
    """Return the two count vectors on common bins (numeric) or the union of categories."""
    if isinstance(reference, CategoricalSummary) and isinstance(current, CategoricalSummary):
        union = sorted(set(reference.categories) | set(current.categories))
        index = {name: i for i, name in enumerate(union)}
        ref = np.zeros(len(union))
        cur = np.zeros(len(union))
        ref[[index[c] for c in reference.categories]] = reference.counts
        cur[[index[c] for c in current.categories]] = current.counts
        return ref, cur
    return (
        np.asarray(reference.counts, dtype=np.float64),
        np.asarray(current.counts, dtype=np.float64),
    )


def coarsen(ref: Counts, cur: Counts, groups: int) -> tuple[Counts, Counts]:
    """Merge adjacent bins into at most ``groups`` groups of about equal reference mass."""
    if ref.size <= groups:
        return ref, cur
    start = np.concatenate(([0.0], np.cumsum(ref)[:-1])) / ref.sum()
    # A bin joins the group its reference mass starts in; the tiny offset keeps a bin that
    # starts exactly on a boundary (k / groups, up to rounding) in group k.
    group = np.minimum((start * groups + 1e-9).astype(np.int64), groups - 1)
    return (
        np.bincount(group, weights=ref, minlength=groups).astype(np.float64),
        np.bincount(group, weights=cur, minlength=groups).astype(np.float64),
    )


def _numeric_binary(
    summaries: tuple[NumericSummary, NumericSummary],
) -> tuple[float, float] | None:
    lo = min(s.minimum for s in summaries)
    hi = max(s.maximum for s in summaries)
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        return None
    for s in summaries:
        bound = (s.mean - lo) * (hi - s.mean)
        if abs(s.m2 / s.count - bound) > _BINARY_RTOL * (hi - lo) ** 2:
            return None
    return lo, hi


def binary_counts(
    reference: ColumnSummary, current: ColumnSummary
) -> tuple[float, float, float, float] | None:
    """Return (successes, rows) of the reference and the current, or None if not two-valued.

    A categorical column is two-valued when the union of its categories has two members
    (the success is the later one in sorted order). A numeric column is two-valued when every
    value sits at the common minimum or maximum, which the exact moments prove: values in
    [lo, hi] have variance (mean - lo)(hi - mean) exactly when none lies strictly inside.
    """
    if isinstance(reference, CategoricalSummary) and isinstance(current, CategoricalSummary):
        ref, cur = paired_counts(reference, current)
        if ref.size != 2:
            return None
        return float(ref[1]), float(ref.sum()), float(cur[1]), float(cur.sum())
    if isinstance(reference, NumericSummary) and isinstance(current, NumericSummary):
        if reference.count <= 0 or current.count <= 0:
            return None
        span = _numeric_binary((reference, current))
        if span is None:
            return None
        lo, hi = span
        return (
            round((reference.mean - lo) / (hi - lo) * reference.count),
            float(reference.count),
            round((current.mean - lo) / (hi - lo) * current.count),
            float(current.count),
        )
    return None


def numeric_pair(
    reference: ColumnSummary, current: ColumnSummary, *, column: str, test: str
) -> tuple[NumericSummary, NumericSummary]:
    """Check a pair like :func:`check_pair` for a numeric-only test and return it narrowed."""
    check_pair(reference, current, column=column, test=test, kinds=("numeric",))
    if not (isinstance(reference, NumericSummary) and isinstance(current, NumericSummary)):
        raise InvalidInput(
            f"column {column!r}: the {test} test reads numeric summaries only.",
            field=column,
            hint="Pick a test for this kind in DriftConfig or leave it on 'auto'.",
        )
    return reference, current
