"""FedProx: FedAvg on the server, the proximal weight sent to clients."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest

from fedloop.core import InvalidInput
from fedloop.federated.strategies import ClientUpdate, FedProx


def test_fedprox_sends_proximal_mu_to_clients() -> None:
    """configure_train carries proximal_mu for the client's proximal term."""
    # Arrange
    strategy = FedProx(0.01)

    # Act
    settings = strategy.configure_train(3)

    # Assert
    assert settings == {"proximal_mu": 0.01}


def test_fedprox_aggregates_like_fedavg() -> None:
    """The server side is the example-weighted average."""
    # Arrange
    current = OrderedDict(w=np.zeros(2))
    updates = [
        ClientUpdate("a", OrderedDict(w=np.array([1.0, 2.0])), 1),
        ClientUpdate("b", OrderedDict(w=np.array([3.0, 4.0])), 3),
    ]

    # Act
    result = FedProx(0.1).aggregate_train(1, current, updates)

    # Assert
    # (1 * [1, 2] + 3 * [3, 4]) / 4
    np.testing.assert_array_equal(result["w"], [2.5, 3.5])


def test_fedprox_stores_proximal_mu_unchanged() -> None:
    """get_params returns the constructor argument as given (0 is allowed: plain FedAvg)."""
    # Arrange
    strategy = FedProx(0)

    # Act
    params = strategy.get_params()

    # Assert
    assert params == {"proximal_mu": 0}
    assert strategy.configure_train(1) == {"proximal_mu": 0.0}


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(-0.1, id="negative"),
        pytest.param(math.nan, id="nan"),
        pytest.param(math.inf, id="inf"),
        pytest.param("0.1", id="string"),
        pytest.param(True, id="bool"),
    ],
)
def test_fedprox_refuses_bad_proximal_mu(value: object) -> None:
    """proximal_mu must be a finite number >= 0."""
    # Act / Assert
    with pytest.raises(InvalidInput, match=r"proximal_mu.*>= 0") as info:
        FedProx(value)  # type: ignore[arg-type]
    assert info.value.field == "strategy.proximal_mu"
