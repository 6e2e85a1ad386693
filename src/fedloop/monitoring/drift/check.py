"""check_drift: every column's test, the multiple-testing correction and the verdict."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from typing import Literal

import numpy as np

from fedloop.core.config import DriftConfig
from fedloop.core.errors import InvalidInput
from fedloop.learn.profiles import ColumnSummary, DataProfile
from fedloop.monitoring.drift._bins import check_alike, total
from fedloop.monitoring.drift.multiple import adjust_p_values
from fedloop.monitoring.drift.multivariate import (
    MIN_ROWS,
    MultivariateResult,
    domain_classifier_test,
)
from fedloop.monitoring.drift.report import ColumnDrift, DriftReport
from fedloop.monitoring.drift.select import choose_rule, column_kind

__all__ = ["check_drift"]

Role = Literal["feature", "prediction"]


def _skip(
    name: str, role: Role, reference: ColumnSummary | None, current: ColumnSummary | None, why: str
) -> ColumnDrift:
    return ColumnDrift(
        column=name,
        role=role,
        kind=None,
        test=None,
        statistic=None,
        p_value=None,
        adjusted_p_value=None,
        effect=None,
        effect_name=None,
        effect_threshold=None,
        effect_noise=None,
        drifted=False,
        reference_count=0 if reference is None else total(reference),
        current_count=0 if current is None else total(current),
        reason=why,
    )


def _untested_reason(
    reference: ColumnSummary | None, current: ColumnSummary | None, *, min_rows: int
) -> str | None:
    if reference is None:
        return "not in the reference profile; not tested"
    if current is None:
        return "missing from the current profile; not tested"
    ref_rows, cur_rows = total(reference), total(current)
    if cur_rows == 0:
        return "no current rows; not tested"
    if ref_rows == 0:
        return "no reference rows; not tested"
    if min(ref_rows, cur_rows) < min_rows:
        return f"too few rows ({min(ref_rows, cur_rows)} < min_rows {min_rows}); not tested"
    return None


def _test_column(
    name: str, role: Role, reference: ColumnSummary, current: ColumnSummary, config: DriftConfig
) -> ColumnDrift:
    kind = column_kind(reference, current)
    rule = choose_rule(kind, config)
    result = rule.test(reference, current, column=name)
    effect = (
        result if rule.effect_test is None else rule.effect_test(reference, current, column=name)
    )
    return ColumnDrift(
        column=name,
        role=role,
        kind=kind,
        test=result.test,
        statistic=result.statistic,
        p_value=result.p_value,
        adjusted_p_value=None,
        effect=effect.effect,
        effect_name=effect.effect_name,
        effect_threshold=rule.threshold + effect.effect_noise,
        effect_noise=effect.effect_noise,
        drifted=False,
        reference_count=total(reference),
        current_count=total(current),
        reason="",
    )


def _decide(entry: ColumnDrift, adjusted: float | None, alpha: float) -> ColumnDrift:
    effect, threshold = entry.effect or 0.0, entry.effect_threshold or 0.0
    noise = entry.effect_noise or 0.0
    big = effect >= threshold
    size = (
        f"{entry.effect_name} {effect:.3g} {'>=' if big else '<'} {threshold:.3g}"
        f" (floor {threshold - noise:.3g} + noise {noise:.2g})"
    )
    if adjusted is None:
        return replace(entry, drifted=big, reason=f"{entry.test}: {size}")
    significant = adjusted < alpha
    if significant and big:
        reason = f"{entry.test}: adjusted p={adjusted:.2g} < {alpha:g} and {size}"
    elif significant:
        reason = f"{entry.test}: significant (adjusted p={adjusted:.2g}) but {size}, too small"
    else:
        reason = f"{entry.test}: not significant (adjusted p={adjusted:.2g} >= {alpha:g})"
    return replace(entry, adjusted_p_value=adjusted, drifted=significant and big, reason=reason)


def _sample_columns(profile: DataProfile, *, side: str) -> list[str]:
    names = [name for name, summary in profile.columns.items() if summary.kind == "numeric"]
    sample = profile.sample
    if sample is not None and (sample.ndim != 2 or sample.shape[1] != len(names)):
        raise InvalidInput(
            f"the {side} profile's sample has shape {sample.shape} but the profile has "
            f"{len(names)} numeric columns.",
            field=f"{side}.sample",
            hint="A profile's sample holds its numeric columns, in column order.",
        )
    return names


def _multivariate(
    reference: DataProfile, current: DataProfile, config: DriftConfig, exclude: Collection[str]
) -> MultivariateResult | None:
    if not config.multivariate or reference.sample is None or current.sample is None:
        return None
    ref_names = _sample_columns(reference, side="reference")
    cur_names = _sample_columns(current, side="current")
    shared = [n for n in ref_names if n in set(cur_names) and n not in exclude]
    if not shared or min(reference.sample.shape[0], current.sample.shape[0]) < MIN_ROWS:
        return None
    return domain_classifier_test(
        reference.sample[:, [ref_names.index(n) for n in shared]],
        current.sample[:, [cur_names.index(n) for n in shared]],
        columns=shared,
        max_rows=config.multivariate_max_rows,
        alpha=config.alpha,
        min_auc=config.multivariate_min_auc,
        seed=config.seed,
    )


def check_drift(
    reference: DataProfile,
    current: DataProfile,
    *,
    config: DriftConfig | None = None,
    prediction_columns: Collection[str] = (),
) -> DriftReport:
    """Test every column of ``current`` against ``reference`` and give a data-set verdict.

    Each column gets the test its kind calls for (see ``fedloop.monitoring.drift.select``);
    the p-values of all tested columns, features and predictions together, are corrected
    for multiple testing; a column is flagged when its corrected p-value is below ``alpha``
    and its effect reaches the practical floor (distance-only tests: when the distance
    reaches its threshold). The verdict is "drift" when any column is flagged or the
    multivariate test flags: a share-of-columns rule would hide a few strongly drifting
    features. Columns missing on one side, or with fewer than ``min_rows`` rows, are reported
    with a reason and not tested.

    Parameters
    ----------
    reference : DataProfile
        The reference (training) profile.
    current : DataProfile
        The current window, profiled on the reference's edges and categories.
    config : DriftConfig or None, default None
        Tests, thresholds and correction; None means ``DriftConfig()``.
    prediction_columns : collection of str, default ()
        Columns holding model outputs; tested the same way and reported with role
        "prediction" (prediction drift).

    Returns
    -------
    DriftReport
        One entry per column and the verdict.

    Raises
    ------
    InvalidInput
        If a column differs in kind between the profiles, a numeric column is not on the
        reference's edges (both name the column), a summary is malformed, or a prediction
        column is in neither profile.

    Examples
    --------
    >>> report = check_drift(reference_profile, window_profile, prediction_columns=["score"])
    >>> report.verdict, report.drifted_columns  # doctest: +SKIP
    ('drift', ('amount', 'score'))
    """
    config = config or DriftConfig()
    predictions = set(prediction_columns)
    unknown = sorted(predictions - set(reference.columns) - set(current.columns))
    if unknown:
        raise InvalidInput(
            f"prediction_columns names {unknown} but neither profile has them.",
            field="prediction_columns",
            value=unknown,
            hint="Name the prediction columns as they appear in the profiles.",
        )
    names = [*reference.columns, *(n for n in current.columns if n not in reference.columns)]
    entries: list[ColumnDrift] = []
    for name in names:
        role: Role = "prediction" if name in predictions else "feature"
        ref, cur = reference.columns.get(name), current.columns.get(name)
        if ref is not None and cur is not None:
            check_alike(ref, cur, column=name)
        why = _untested_reason(ref, cur, min_rows=config.min_rows)
        if why is not None or ref is None or cur is None:
            entries.append(_skip(name, role, ref, cur, why or ""))
        else:
            entries.append(_test_column(name, role, ref, cur, config))
    tested = [i for i, e in enumerate(entries) if e.test is not None]
    with_p = [i for i in tested if entries[i].p_value is not None]
    adjusted = adjust_p_values(
        np.array([entries[i].p_value for i in with_p], dtype=np.float64), config.correction
    )
    by_index = {i: float(a) for i, a in zip(with_p, adjusted, strict=True)}
    for i in tested:
        entries[i] = _decide(entries[i], by_index.get(i), config.alpha)
    multivariate = _multivariate(reference, current, config, predictions)
    drifted = [e for e in entries if e.drifted]
    return DriftReport(
        columns=tuple(entries),
        verdict="drift" if drifted or (multivariate and multivariate.drifted) else "no_drift",
        num_tested=len(tested),
        num_drifted=len(drifted),
        share_drifted=len(drifted) / len(tested) if tested else 0.0,
        correction=config.correction,
        alpha=config.alpha,
        prediction_drift=any(e.role == "prediction" for e in drifted),
        multivariate=multivariate,
    )
