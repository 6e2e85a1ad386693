"""Private helpers shared by the strategies: update checks, hyperparameter checks and casts."""

from __future__ import annotations

import math
import numbers
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from fedloop.core import AggregationError, InvalidInput, Parameters
from fedloop.federated.strategies.base import ClientUpdate, SecureSum, weighted_average

_HINT = "Pass it to the strategy's constructor or set it under [strategy.params] in fedloop.toml."


def _invalid(field: str, expected: str, value: Any) -> InvalidInput:
    return InvalidInput(
        f"`strategy.{field}` must be {expected}; got {value!r}.",
        field=f"strategy.{field}",
        value=value,
        hint=_HINT,
    )


def _check_number(
    value: Any,
    *,
    field: str,
    low: float,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = True,
) -> None:
    """Raise InvalidInput unless ``value`` is a finite real number in the given interval."""
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    interval = f"{left}{low:g}, {high:g}{right}" if math.isfinite(high) else None
    if interval is None:
        expected = f"a finite number {'>' if low_open else '>='} {low:g}"
    else:
        expected = f"a number in {interval}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _invalid(field, expected, value)
    number = float(value)
    above = number > low if low_open else number >= low
    below = number < high if high_open else number <= high
    if not (math.isfinite(number) and above and below):
        raise _invalid(field, expected, value)


def _check_int(value: Any, *, field: str, low: int) -> None:
    """Raise InvalidInput unless ``value`` is an integer ``>= low``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise _invalid(field, f"an integer >= {low}", value)


def _check_choice(value: Any, *, field: str, choices: Iterable[str]) -> None:
    """Raise InvalidInput unless ``value`` is one of ``choices``."""
    options = tuple(choices)
    if not isinstance(value, str) or value not in options:
        raise _invalid(field, f"one of {', '.join(repr(c) for c in options)}", value)


def _check_updates(current: Parameters, updates: Sequence[ClientUpdate]) -> list[ClientUpdate]:
    """Check updates against the global model and return them sorted by ``client_id``.

    Every update must hold exactly the tensors of ``current`` (any order) with the same shapes
    and dtypes, and a non-negative example count. Sorting makes every rule independent of the
    order the caller passes updates in (the sort is stable, so equal ids keep theirs).

    Raises
    ------
    AggregationError
        For no updates, or naming the first client and tensor that does not fit.
    """
    if not updates:
        raise AggregationError(
            "no updates to aggregate.",
            field="updates",
            hint="Call aggregate_train only when at least one client update was accepted.",
        )
    names = set(current)
    for update in updates:
        where = f"updates[{update.client_id!r}]"
        if isinstance(update.num_examples, bool) or update.num_examples < 0:
            raise AggregationError(
                f"client {update.client_id!r} reported num_examples={update.num_examples!r}; "
                "expected an integer >= 0.",
                field=f"{where}.num_examples",
                value=update.num_examples,
            )
        got = set(update.parameters)
        if got != names:
            missing, extra = sorted(names - got), sorted(got - names)
            tensor = (missing or extra)[0]
            raise AggregationError(
                f"client {update.client_id!r} sent tensors that differ from the model "
                f"(missing {missing[:3]}, unexpected {extra[:3]}); first: {tensor!r}.",
                field=f"{where}.parameters[{tensor!r}]",
                hint="Every client must train the same architecture as the global model.",
            )
        for name, reference in current.items():
            array = update.parameters[name]
            if array.shape != reference.shape or array.dtype != reference.dtype:
                raise AggregationError(
                    f"client {update.client_id!r} sent tensor {name!r} with shape "
                    f"{array.shape} and dtype {array.dtype}; the model has shape "
                    f"{reference.shape} and dtype {reference.dtype}.",
                    field=f"{where}.parameters[{name!r}]",
                    hint="Every client must train the same architecture as the global model.",
                )
    return sorted(updates, key=lambda u: u.client_id)


def _check_base_rounds(updates: Sequence[ClientUpdate], round_num: int) -> None:
    """Raise AggregationError unless every ``base_round`` is an integer in ``[0, round_num)``."""
    for update in updates:
        base = update.base_round
        if isinstance(base, bool) or not isinstance(base, int) or not 0 <= base < round_num:
            raise AggregationError(
                f"client {update.client_id!r} has base_round {base!r}; expected an integer "
                f"in [0, {round_num - 1}] (an earlier call's round_num, or 0).",
                field=f"updates[{update.client_id!r}].base_round",
                value=base,
            )


def _is_float(array: npt.NDArray[np.generic]) -> bool:
    return array.dtype.kind == "f"


def _cast_like(values: npt.NDArray[np.float64], dtype: np.dtype[Any]) -> npt.NDArray[np.generic]:
    """Cast float64 results back to a tensor's dtype.

    Floats are cast directly. Integers are rounded to the nearest value (ties to even) and
    clipped to the dtype's range; booleans are rounded to 0/1, i.e. a (weighted) majority vote.
    """
    if dtype.kind == "f":
        return values.astype(dtype)
    rounded = np.rint(values)
    if dtype.kind == "b":
        return np.clip(rounded, 0, 1).astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(rounded, float(info.min), float(info.max)).astype(dtype)


def _weighted_mean(tensors: Sequence[Parameters], weights: Sequence[float]) -> Parameters:
    """Weighted average per tensor; integer and boolean tensors are rounded (see `_cast_like`).

    Floating tensors go through :func:`weighted_average` (float64 accumulation, cast back).

    Raises
    ------
    AggregationError
        When there is nothing to average or the weights sum to zero.
    """
    if not tensors:
        raise AggregationError("no updates to aggregate.", field="updates")
    first = tensors[0]
    floats = [name for name, array in first.items() if _is_float(array)]
    averaged = weighted_average([OrderedDict((n, t[n]) for n in floats) for t in tensors], weights)
    total = float(sum(weights))
    out: Parameters = OrderedDict()
    for name, array in first.items():
        if name in averaged:
            out[name] = averaged[name]
            continue
        acc = np.zeros(array.shape, dtype=np.float64)
        for params, weight in zip(tensors, weights, strict=True):
            acc += params[name].astype(np.float64) * (weight / total)
        out[name] = _cast_like(acc, array.dtype)
    return out


def _example_weights(updates: Sequence[ClientUpdate]) -> list[float]:
    return [float(u.num_examples) for u in updates]


def _stack(updates: Sequence[ClientUpdate], name: str) -> npt.NDArray[np.float64]:
    """Stack one tensor of every update along a new first axis, in float64."""
    return np.stack([u.parameters[name].astype(np.float64) for u in updates])


def _flat_floats(params: Parameters) -> npt.NDArray[np.float64]:
    """Concatenate every floating tensor into one float64 vector (empty when there is none)."""
    parts = [a.astype(np.float64).ravel() for a in params.values() if _is_float(a)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)


def _copy(params: Parameters) -> Parameters:
    return OrderedDict((name, np.array(array, copy=True)) for name, array in params.items())


def _scalar(state: Mapping[str, npt.NDArray[np.generic]], key: str) -> int:
    """Read an integer counter stored as a one-element array.

    Raises
    ------
    InvalidInput
        When the key is missing or not a single integer.
    """
    array = state.get(key)
    if array is None or array.size != 1 or array.dtype.kind not in "iu":
        raise InvalidInput(
            f"strategy state lacks the integer counter {key!r}.",
            field=f"state[{key!r}]",
            hint="Load a state_dict written by the same strategy.",
        )
    return int(array.reshape(-1)[0])


def _counter(value: int) -> npt.NDArray[np.generic]:
    return np.array([value], dtype=np.int64)


def _prefixed(state: Mapping[str, npt.NDArray[np.generic]], prefix: str) -> Parameters:
    """Return the entries whose key starts with ``prefix``, keyed by the rest, in order."""
    return OrderedDict((k[len(prefix) :], a) for k, a in state.items() if k.startswith(prefix))


def _mean_from_sum(
    current: Parameters, total: SecureSum
) -> OrderedDict[str, npt.NDArray[np.float64]]:
    """Return ``x + delta_sum / weight_sum`` in ``current``'s order, in float64.

    Raises
    ------
    AggregationError
        When the tensors do not match ``current`` or the weights sum to zero.
    """
    if total.weight_sum <= 0:
        raise AggregationError(
            "the secure sum's weights add up to zero (every client reported 0 examples).",
            field="num_examples",
        )
    if list(total.delta_sum) != list(current) or any(
        total.delta_sum[n].shape != a.shape for n, a in current.items()
    ):
        raise AggregationError(
            "the secure sum does not match the global model's tensors.", field="delta_sum"
        )
    return OrderedDict(
        (
            name,
            array.astype(np.float64) + total.delta_sum[name].astype(np.float64) / total.weight_sum,
        )
        for name, array in current.items()
    )
