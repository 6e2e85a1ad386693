"""FedAvg: example-weighted averaging, checked against hand computations."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from fedloop.core import AggregationError
from fedloop.federated.strategies import ClientUpdate, FedAvg


def _update(client_id: str, num_examples: int, **tensors: np.ndarray) -> ClientUpdate:
    return ClientUpdate(client_id, OrderedDict(tensors), num_examples)


def test_fedavg_weights_clients_by_examples() -> None:
    """[1, 2] with 1 example and [3, 4] with 3 examples average to [2.5, 3.5]."""
    # Arrange
    current = OrderedDict(w=np.zeros(2))
    updates = [_update("a", 1, w=np.array([1.0, 2.0])), _update("b", 3, w=np.array([3.0, 4.0]))]

    # Act
    result = FedAvg().aggregate_train(1, current, updates)

    # Assert
    # (1 * [1, 2] + 3 * [3, 4]) / 4 = [10, 14] / 4
    np.testing.assert_array_equal(result["w"], [2.5, 3.5])


def test_fedavg_keeps_float32_dtype() -> None:
    """A float32 model comes back as float32 (accumulated in float64, cast back)."""
    # Arrange
    current = OrderedDict(w=np.zeros(2, dtype=np.float32))
    updates = [
        _update("a", 1, w=np.array([0.1, 0.2], dtype=np.float32)),
        _update("b", 2, w=np.array([0.4, 0.8], dtype=np.float32)),
    ]

    # Act
    result = FedAvg().aggregate_train(1, current, updates)

    # Assert
    assert result["w"].dtype == np.float32
    # (0.1 + 2 * 0.4) / 3 = 0.3 and (0.2 + 2 * 0.8) / 3 = 0.6
    np.testing.assert_allclose(result["w"], [0.3, 0.6], rtol=1e-6)


@pytest.mark.parametrize(
    ("counts", "examples", "expected"),
    [
        pytest.param([10, 11], [3, 1], 10, id="10.25-rounds-down"),
        pytest.param([10, 13], [1, 1], 12, id="11.5-ties-to-even"),
        pytest.param([10, 14], [1, 3], 13, id="13-exact"),
    ],
)
def test_fedavg_rounds_integer_tensors(
    counts: list[int], examples: list[int], expected: int
) -> None:
    """An int64 counter (num_batches_tracked) gets the weighted average, rounded to nearest."""
    # Arrange
    current = OrderedDict(n=np.array(0, dtype=np.int64))
    updates = [
        _update(f"c{i}", k, n=np.array(c, dtype=np.int64))
        for i, (c, k) in enumerate(zip(counts, examples, strict=True))
    ]

    # Act
    result = FedAvg().aggregate_train(1, current, updates)

    # Assert
    assert result["n"].dtype == np.int64
    assert int(result["n"]) == expected


def test_fedavg_takes_weighted_majority_of_boolean_tensors() -> None:
    """A boolean mask takes the example-weighted majority per element."""
    # Arrange
    current = OrderedDict(mask=np.zeros(2, dtype=bool))
    updates = [
        _update("a", 3, mask=np.array([True, False])),
        _update("b", 1, mask=np.array([False, True])),
    ]

    # Act
    result = FedAvg().aggregate_train(1, current, updates)

    # Assert
    # [0.75, 0.25] rounds to [1, 0]
    np.testing.assert_array_equal(result["mask"], [True, False])


def test_fedavg_returns_tensors_in_the_model_order() -> None:
    """The result follows the tensor order of the current model, not of the updates."""
    # Arrange
    current = OrderedDict(a=np.zeros(1), b=np.zeros(1))
    updates = [ClientUpdate("c", OrderedDict(b=np.ones(1), a=np.ones(1)), 1)]

    # Act
    result = FedAvg().aggregate_train(1, current, updates)

    # Assert
    assert list(result) == ["a", "b"]


def test_fedavg_refuses_updates_with_no_examples() -> None:
    """Updates that all report 0 examples cannot be weighted."""
    # Arrange
    current = OrderedDict(w=np.zeros(1))
    updates = [_update("a", 0, w=np.ones(1)), _update("b", 0, w=np.ones(1))]

    # Act / Assert
    with pytest.raises(AggregationError, match=r"sum to zero") as info:
        FedAvg().aggregate_train(1, current, updates)
    assert info.value.field == "num_examples"


def test_fedavg_refuses_negative_example_counts() -> None:
    """A negative example count names the client."""
    # Arrange
    current = OrderedDict(w=np.zeros(1))
    updates = [_update("a", -1, w=np.ones(1))]

    # Act / Assert
    with pytest.raises(AggregationError, match=r"'a'") as info:
        FedAvg().aggregate_train(1, current, updates)
    assert info.value.field == "updates['a'].num_examples"


def test_fedavg_names_the_client_and_tensor_of_a_bad_update() -> None:
    """A tensor of the wrong shape is reported with its client and name."""
    # Arrange
    current = OrderedDict(w=np.zeros(2), b=np.zeros(1))
    updates = [
        _update("a", 1, w=np.zeros(2), b=np.zeros(1)),
        _update("b", 1, w=np.zeros(3), b=np.zeros(1)),
    ]

    # Act / Assert
    with pytest.raises(AggregationError, match=r"client 'b' sent tensor 'w'") as info:
        FedAvg().aggregate_train(1, current, updates)
    assert info.value.field == "updates['b'].parameters['w']"


def test_fedavg_has_no_params_or_state() -> None:
    """FedAvg has no hyperparameters, client settings or server state."""
    # Arrange
    strategy = FedAvg()

    # Act / Assert
    assert (strategy.get_params(), strategy.configure_train(1), strategy.state_dict()) == (
        {},
        {},
        {},
    )
