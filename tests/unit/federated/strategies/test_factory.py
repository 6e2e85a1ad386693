"""The strategy registry and make_strategy."""

from __future__ import annotations

import pytest

from fedloop.core import InvalidInput
from fedloop.federated.strategies import (
    STRATEGIES,
    CoordinateMedian,
    FedAvg,
    FedBuff,
    FedProx,
    TrimmedMean,
    make_strategy,
)


def test_registry_lists_every_strategy_by_name() -> None:
    """STRATEGIES has the eleven documented names, each the class's own name."""
    # Act
    names = sorted(STRATEGIES)

    # Assert
    assert names == [
        "dpfedavg",
        "fedadagrad",
        "fedadam",
        "fedavg",
        "fedbuff",
        "fedprox",
        "fedyogi",
        "krum",
        "median",
        "multikrum",
        "trimmed_mean",
    ]
    assert all(cls.name == name for name, cls in STRATEGIES.items())


@pytest.mark.parametrize(
    ("name", "params", "cls"),
    [
        pytest.param("fedavg", {}, FedAvg, id="fedavg"),
        pytest.param("FedProx", {"proximal_mu": 0.1}, FedProx, id="case-insensitive"),
        pytest.param("median", {}, CoordinateMedian, id="median"),
        pytest.param("trimmed_mean", {"beta": 0.1}, TrimmedMean, id="trimmed-mean"),
        pytest.param("fedbuff", {"buffer_size": 3, "staleness": "hinge"}, FedBuff, id="fedbuff"),
    ],
)
def test_make_strategy_builds_the_named_class(
    name: str, params: dict[str, object], cls: type
) -> None:
    """make_strategy returns an instance of the registered class with the given params."""
    # Act
    strategy = make_strategy(name, **params)

    # Assert
    assert type(strategy) is cls
    assert {k: strategy.get_params()[k] for k in params} == params


def test_make_strategy_refuses_unknown_names() -> None:
    """An unknown name is refused with the known names listed."""
    # Act / Assert
    with pytest.raises(
        InvalidInput, match=r"one of dpfedavg, fedadagrad, .*trimmed_mean; got 'fedsgd'"
    ) as info:
        make_strategy("fedsgd")
    assert info.value.field == "strategy.name"


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        pytest.param("fedavg", {"proximal_mu": 0.1}, "proximal_mu", id="fedavg-takes-none"),
        pytest.param("fedadagrad", {"beta_2": 0.9}, "beta_2", id="adagrad-has-no-beta2"),
        pytest.param("krum", {"num_byzantine": 1, "f": 1}, "f", id="krum-typo"),
    ],
)
def test_make_strategy_refuses_unknown_params(
    name: str, params: dict[str, object], field: str
) -> None:
    """A parameter the strategy does not take is refused, naming it."""
    # Act / Assert
    with pytest.raises(InvalidInput, match=rf"`strategy\.{field}` is not a parameter") as info:
        make_strategy(name, **params)
    assert info.value.field == f"strategy.{field}"


@pytest.mark.parametrize(
    ("name", "field"),
    [
        pytest.param("fedprox", "proximal_mu", id="fedprox"),
        pytest.param("krum", "num_byzantine", id="krum"),
        pytest.param("fedbuff", "buffer_size", id="fedbuff"),
    ],
)
def test_make_strategy_refuses_missing_params(name: str, field: str) -> None:
    """A required parameter that is missing is named."""
    # Act / Assert
    with pytest.raises(InvalidInput, match=rf"`strategy\.{field}` is required") as info:
        make_strategy(name)
    assert info.value.field == f"strategy.{field}"


def test_make_strategy_passes_on_range_errors() -> None:
    """Out-of-range values fail in the constructor with the parameter's field."""
    # Act / Assert
    with pytest.raises(InvalidInput, match=r"\[0, 0\.5\)") as info:
        make_strategy("trimmed_mean", beta=0.7)
    assert info.value.field == "strategy.beta"
