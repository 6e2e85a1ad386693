"""The strategy registry: names in ``[strategy]`` to classes, and the factory that builds one."""

from __future__ import annotations

import inspect
from typing import Any

from fedloop.core import InvalidInput
from fedloop.federated.strategies.base import Strategy
from fedloop.federated.strategies.dpfedavg import DPFedAvg
from fedloop.federated.strategies.fedavg import FedAvg
from fedloop.federated.strategies.fedbuff import FedBuff
from fedloop.federated.strategies.fedopt import FedAdagrad, FedAdam, FedYogi
from fedloop.federated.strategies.fedprox import FedProx
from fedloop.federated.strategies.robust import CoordinateMedian, Krum, MultiKrum, TrimmedMean

__all__ = ["STRATEGIES", "make_strategy"]

#: Every built-in strategy by its ``name`` (the value of ``[strategy] name``).
STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (
        FedAvg,
        FedProx,
        FedAdam,
        FedYogi,
        FedAdagrad,
        CoordinateMedian,
        TrimmedMean,
        Krum,
        MultiKrum,
        FedBuff,
        DPFedAvg,
    )
}


def make_strategy(name: str, **params: Any) -> Strategy:
    """Build a strategy from its registry name and constructor arguments.

    Parameters
    ----------
    name : str
        A key of :data:`STRATEGIES` (case-insensitive), e.g. ``"fedavg"`` or ``"krum"``.
    **params : Any
        Constructor arguments, e.g. ``proximal_mu=0.01`` for ``"fedprox"``.

    Returns
    -------
    Strategy
        The new strategy; ``make_strategy(s.name, **s.get_params())`` rebuilds ``s``.

    Raises
    ------
    InvalidInput
        For an unknown name (field ``strategy.name``, the message lists the known ones), an
        unknown or missing parameter, or a value out of range (field ``strategy.<param>``).

    Examples
    --------
    >>> from fedloop.federated.strategies import make_strategy
    >>> make_strategy("fedprox", proximal_mu=0.01).get_params()
    {'proximal_mu': 0.01}
    """
    key = name.strip().lower() if isinstance(name, str) else name
    cls = STRATEGIES.get(key)
    if cls is None:
        raise InvalidInput(
            f"`strategy.name` must be one of {', '.join(sorted(STRATEGIES))}; got {name!r}.",
            field="strategy.name",
            value=name,
            hint="Set name under [strategy] in fedloop.toml or pass --strategy.",
        )
    accepted = [
        p
        for p in inspect.signature(cls).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    names = [p.name for p in accepted]
    takes = f"it takes {', '.join(names)}" if names else "it takes none"
    for param in sorted(params):
        if param not in names:
            raise InvalidInput(
                f"`strategy.{param}` is not a parameter of {key}; {takes}.",
                field=f"strategy.{param}",
                value=params[param],
                hint="Fix the key under [strategy.params] in fedloop.toml.",
            )
    for p in accepted:
        if p.default is p.empty and p.name not in params:
            raise InvalidInput(
                f"`strategy.{p.name}` is required by {key}; {takes}.",
                field=f"strategy.{p.name}",
                hint=f"Set {p.name} under [strategy.params] in fedloop.toml.",
            )
    return cls(**params)
