"""The Strategy contract, run against every registered strategy."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedloop.core import AggregationError, Parameters, decode_parameters, encode_parameters
from fedloop.federated import strategies
from fedloop.federated.strategies import STRATEGIES, ClientUpdate, FedAvg, Strategy

#: Valid arguments for strategies that need some; the contract uses NUM_CLIENTS updates.
PARAMS: dict[str, dict[str, Any]] = {
    "fedprox": {"proximal_mu": 0.01},
    "trimmed_mean": {"beta": 0.2},
    "krum": {"num_byzantine": 1},
    "multikrum": {"num_byzantine": 1, "num_selected": 2},
    "fedbuff": {"buffer_size": 2},
    # noise 0 and a loose bound make DP-FedAvg the uniform average the contract checks exactly
    "dpfedavg": {"noise_multiplier": 0.0, "clip_norm": 1e6},
}
#: Server optimizers move part of the way toward the clients, so they never return the update.
SERVER_OPTIMIZERS = {"fedadam", "fedyogi", "fedadagrad"}
NUM_CLIENTS = 5
SHAPES = OrderedDict(w=(2, 3), b=(3,))

MakeStrategy = Callable[[], Strategy]


@pytest.fixture(scope="module", params=[pytest.param(name, id=name) for name in sorted(STRATEGIES)])
def make_strategy(request: pytest.FixtureRequest) -> MakeStrategy:
    """Return a factory of fresh strategies of one registered kind, with valid params."""
    name: str = request.param
    return lambda: strategies.make_strategy(name, **PARAMS.get(name, {}))


def _model(rng: np.random.Generator) -> Parameters:
    model: Parameters = OrderedDict(
        (name, rng.normal(size=shape).astype(np.float32)) for name, shape in SHAPES.items()
    )
    model["count"] = np.array(rng.integers(0, 100), dtype=np.int64)
    return model


def _updates(models: list[Parameters]) -> list[ClientUpdate]:
    return [ClientUpdate(f"c{i}", m, 10 + i) for i, m in enumerate(models)]


def _aggregate(make: MakeStrategy, current: Parameters, updates: list[ClientUpdate]) -> Parameters:
    strategy = make()
    strategy.initialize(current)
    return strategy.aggregate_train(1, current, updates)


def _assert_same(left: Parameters, right: Parameters) -> None:
    assert list(left) == list(right)
    for name in left:
        assert left[name].dtype == right[name].dtype, name
        assert np.array_equal(left[name], right[name]), name


def test_clients_equal_to_the_model_leave_it_unchanged(make_strategy: MakeStrategy) -> None:
    """When every client returns the current model, the model does not move."""
    # Arrange
    current = _model(np.random.default_rng(0))

    # Act
    result = _aggregate(make_strategy, current, _updates([current] * NUM_CLIENTS))

    # Assert
    _assert_same(result, current)


def test_identical_updates_give_that_update(make_strategy: MakeStrategy) -> None:
    """Every client sending one model: the rules return it, server optimizers step toward it."""
    # Arrange
    rng = np.random.default_rng(1)
    current, update = _model(rng), _model(rng)
    strategy = make_strategy()

    # Act
    result = _aggregate(make_strategy, current, _updates([update] * NUM_CLIENTS))

    # Assert
    if strategy.name not in SERVER_OPTIMIZERS:
        _assert_same(result, update)
        return
    assert result["count"] == update["count"]
    for name in SHAPES:
        step, wanted = result[name] - current[name], update[name] - current[name]
        assert np.array_equal(np.sign(step), np.sign(wanted)), name


def test_output_has_the_model_names_shapes_and_dtypes(make_strategy: MakeStrategy) -> None:
    """The result holds the model's tensors, in order, with their shapes and dtypes."""
    # Arrange
    rng = np.random.default_rng(2)
    current = _model(rng)

    # Act
    result = _aggregate(make_strategy, current, _updates([_model(rng) for _ in range(5)]))

    # Assert
    assert list(result) == list(current)
    assert [(a.shape, a.dtype) for a in result.values()] == [
        (a.shape, a.dtype) for a in current.values()
    ]


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda m: m.update(w=np.zeros((3, 2), dtype=np.float32)), id="shape"),
        pytest.param(lambda m: m.update(w=np.zeros((2, 3), dtype=np.float64)), id="dtype"),
        pytest.param(lambda m: m.pop("b"), id="missing"),
        pytest.param(lambda m: m.update(extra=np.zeros(1, dtype=np.float32)), id="extra"),
    ],
)
def test_mismatched_update_is_refused(
    make_strategy: MakeStrategy, mutate: Callable[[Parameters], object]
) -> None:
    """An update whose tensors differ from the model's raises AggregationError naming it."""
    # Arrange
    rng = np.random.default_rng(3)
    current = _model(rng)
    models = [_model(rng) for _ in range(NUM_CLIENTS)]
    mutate(models[2])

    # Act / Assert
    with pytest.raises(AggregationError, match=r"client 'c2'") as info:
        _aggregate(make_strategy, current, _updates(models))
    assert info.value.field is not None
    assert info.value.field.startswith("updates['c2'].parameters")


def test_no_updates_is_refused(make_strategy: MakeStrategy) -> None:
    """Aggregating nothing raises AggregationError."""
    # Arrange
    current = _model(np.random.default_rng(4))

    # Act / Assert
    with pytest.raises(AggregationError, match=r"no updates") as info:
        _aggregate(make_strategy, current, [])
    assert info.value.field == "updates"


def test_aggregation_is_deterministic(make_strategy: MakeStrategy) -> None:
    """Two fresh strategies given the same input return the same bits."""
    # Arrange
    rng = np.random.default_rng(5)
    current = _model(rng)
    updates = _updates([_model(rng) for _ in range(NUM_CLIENTS)])

    # Act
    first = _aggregate(make_strategy, current, updates)
    second = _aggregate(make_strategy, current, updates)

    # Assert
    _assert_same(first, second)


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_result_does_not_depend_on_update_order(
    make_strategy: MakeStrategy, data: st.DataObject
) -> None:
    """Permuting the updates does not change a single bit of the result."""
    # Arrange
    values = hnp.arrays(
        np.float32,
        (NUM_CLIENTS, 4),
        elements=st.floats(-1e3, 1e3, width=32, allow_subnormal=False),
    )
    stacked = data.draw(values, label="client values")
    examples = data.draw(st.lists(st.integers(1, 50), min_size=NUM_CLIENTS, max_size=NUM_CLIENTS))
    current: Parameters = OrderedDict(w=np.zeros(4, dtype=np.float32))
    updates = [ClientUpdate(f"c{i}", OrderedDict(w=stacked[i]), n) for i, n in enumerate(examples)]
    permuted = data.draw(st.permutations(updates), label="order")

    # Act
    result = _aggregate(make_strategy, current, updates)
    again = _aggregate(make_strategy, current, list(permuted))

    # Assert
    _assert_same(result, again)


def test_state_round_trips_through_the_checkpoint_codec(make_strategy: MakeStrategy) -> None:
    """state_dict survives safetensors encoding, and a restored strategy continues identically."""
    # Arrange
    rng = np.random.default_rng(6)
    current = _model(rng)
    rounds = [_updates([_model(rng) for _ in range(NUM_CLIENTS)]) for _ in range(2)]
    original = make_strategy()
    original.initialize(current)
    x1 = original.aggregate_train(1, current, rounds[0])
    checkpoint = decode_parameters(encode_parameters(OrderedDict(original.state_dict())))
    restored = make_strategy()
    restored.load_state_dict(checkpoint)
    second = [
        ClientUpdate(u.client_id, u.parameters, u.num_examples, base_round=1) for u in rounds[1]
    ]

    # Act
    expected = original.aggregate_train(2, x1, second)
    result = restored.aggregate_train(2, x1, second)

    # Assert
    _assert_same(result, expected)


def test_params_rebuild_the_strategy(make_strategy: MakeStrategy) -> None:
    """make_strategy(s.name, **s.get_params()) builds an equal strategy."""
    # Arrange
    strategy = make_strategy()

    # Act
    rebuilt = strategies.make_strategy(strategy.name, **strategy.get_params())

    # Assert
    assert type(rebuilt) is type(strategy)
    assert rebuilt.get_params() == strategy.get_params()


def test_client_settings_are_json_ready(make_strategy: MakeStrategy) -> None:
    """configure_train returns a dict of plain numbers and strings."""
    # Act
    settings_ = make_strategy().configure_train(1)

    # Assert
    assert all(isinstance(v, (int, float, str, bool)) for v in settings_.values())


@settings(max_examples=50, deadline=None)
@given(
    params=hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
        elements=st.floats(width=32, allow_nan=False, allow_infinity=False),
    ),
    num_examples=st.integers(1, 10**6),
)
def test_fedavg_of_one_client_returns_its_parameters(params: np.ndarray, num_examples: int) -> None:
    """FedAvg of a single update returns that update's float32 tensors exactly."""
    # Arrange
    current: Parameters = OrderedDict(w=np.zeros_like(params))
    update = ClientUpdate("only", OrderedDict(w=params), num_examples)

    # Act
    result = FedAvg().aggregate_train(1, current, [update])

    # Assert
    assert result["w"].dtype == np.float32
    assert np.array_equal(result["w"], params)
