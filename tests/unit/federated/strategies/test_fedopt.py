"""FedAdam, FedYogi and FedAdagrad: two server steps checked against hand computations."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import pytest

from fedloop.core import AggregationError, InvalidInput, Parameters, decode_parameters
from fedloop.core import encode_parameters as encode
from fedloop.federated.strategies import ClientUpdate, FedAdagrad, FedAdam, FedYogi
from fedloop.federated.strategies.fedopt import _FedOpt

X0 = OrderedDict(w=np.zeros(2))


def _clients_averaging_to(target: np.ndarray) -> list[ClientUpdate]:
    """Two equally weighted clients whose average is ``target``."""
    spread = np.array([1.0, -1.0])
    return [
        ClientUpdate("a", OrderedDict(w=target + spread), 5),
        ClientUpdate("b", OrderedDict(w=target - spread), 5),
    ]


def _two_rounds(
    strategy: _FedOpt, delta_1: list[float], delta_2: list[float]
) -> tuple[Parameters, Parameters]:
    """Step from X0 along ``delta_1``, then from the result along ``delta_2``."""
    strategy.initialize(X0)
    x1 = strategy.aggregate_train(1, X0, _clients_averaging_to(X0["w"] + delta_1))
    x2 = strategy.aggregate_train(2, x1, _clients_averaging_to(x1["w"] + delta_2))
    return x1, x2


def test_fedadam_two_rounds_match_hand_computation() -> None:
    """FedAdam: m = b1 m + (1-b1) d, v = b2 v + (1-b2) d^2, x += eta m / (sqrt v + tau)."""
    # Arrange
    strategy = FedAdam(0.6, beta_1=0.5, beta_2=0.5, tau=1.0)

    # Act
    x1, x2 = _two_rounds(strategy, [1.0, 7.0], [-1.0, 5.0])

    # Assert
    # v0 = tau^2 = 1. Round 1, d = [1, 7]: m = [0.5, 3.5]; v = 0.5 + 0.5 [1, 49] = [1, 25]
    # x1 = 0.6 * [0.5 / (1 + 1), 3.5 / (5 + 1)] = [0.15, 0.35]
    np.testing.assert_allclose(x1["w"], [0.15, 0.35], rtol=1e-12)
    # Round 2, d = [-1, 5]: m = [0.25 - 0.5, 1.75 + 2.5] = [-0.25, 4.25]; v = [1, 12.5 + 12.5]
    # x2 = x1 + 0.6 * [-0.25 / 2, 4.25 / 6] = [0.15 - 0.075, 0.35 + 0.425]
    np.testing.assert_allclose(x2["w"], [0.075, 0.775], rtol=1e-12)


def test_fedyogi_two_rounds_match_hand_computation() -> None:
    """FedYogi: v = v - (1-b2) d^2 sign(v - d^2)."""
    # Arrange
    strategy = FedYogi(0.6, beta_1=0.5, beta_2=0.5, tau=1.0)

    # Act
    x1, x2 = _two_rounds(strategy, [1.0, 4.0], [0.0, 2.0])

    # Assert
    # v0 = 1. Round 1, d = [1, 4]: m = [0.5, 2]
    # v = [1 - 0.5 * 1 * sign(0), 1 - 0.5 * 16 * sign(-15)] = [1, 9]
    # x1 = 0.6 * [0.5 / (1 + 1), 2 / (3 + 1)] = [0.15, 0.3]
    np.testing.assert_allclose(x1["w"], [0.15, 0.3], rtol=1e-12)
    # Round 2, d = [0, 2]: m = [0.25, 2]; v = [1 - 0, 9 - 0.5 * 4 * sign(5)] = [1, 7]
    # x2 = x1 + 0.6 * [0.25 / 2, 2 / (sqrt(7) + 1)]
    np.testing.assert_allclose(x2["w"], [0.225, 0.3 + 1.2 / (np.sqrt(7.0) + 1.0)], rtol=1e-12)


def test_fedadagrad_two_rounds_match_hand_computation() -> None:
    """FedAdagrad (beta_1 = 0 by default): v = v + d^2, x += eta d / (sqrt v + tau)."""
    # Arrange
    strategy = FedAdagrad(0.6, tau=1.0)

    # Act
    x1, x2 = _two_rounds(strategy, [0.75, 2.4], [-3.0, 0.0])

    # Assert
    # v0 = 1. Round 1: m = d = [0.75, 2.4]; v = 1 + [0.5625, 5.76] = [1.25^2, 2.6^2]
    # x1 = 0.6 * [0.75 / 2.25, 2.4 / 3.6] = [0.2, 0.4]
    np.testing.assert_allclose(x1["w"], [0.2, 0.4], rtol=1e-12)
    # Round 2: m = d = [-3, 0]; v = [1.5625 + 9, 6.76] = [3.25^2, 2.6^2]
    # x2 = x1 + 0.6 * [-3 / 4.25, 0]
    np.testing.assert_allclose(x2["w"], [0.2 - 1.8 / 4.25, 0.4], rtol=1e-12)


@pytest.mark.parametrize(
    "strategy",
    [
        pytest.param(FedAdam(tau=0.1), id="fedadam"),
        pytest.param(FedYogi(tau=0.1), id="fedyogi"),
        pytest.param(FedAdagrad(tau=0.1), id="fedadagrad"),
    ],
)
def test_fedopt_initial_state_is_zero_momentum_and_tau_squared(strategy: _FedOpt) -> None:
    """After initialize, m = 0, v = tau^2 and step = 0, named m.<tensor> / v.<tensor>."""
    # Act
    strategy.initialize(OrderedDict(w=np.ones(3, dtype=np.float32)))
    state = strategy.state_dict()

    # Assert
    assert sorted(state) == ["m.w", "step", "v.w"]
    np.testing.assert_array_equal(state["m.w"], np.zeros(3))
    np.testing.assert_allclose(state["v.w"], np.full(3, 0.01), rtol=1e-15)
    assert state["step"].tolist() == [0]


def test_fedopt_averages_integer_tensors_without_moments() -> None:
    """An integer counter takes the rounded weighted average and has no optimizer state."""
    # Arrange
    current = OrderedDict(w=np.zeros(1), n=np.array(0, dtype=np.int64))
    updates = [
        ClientUpdate("a", OrderedDict(w=np.ones(1), n=np.array(10, dtype=np.int64)), 1),
        ClientUpdate("b", OrderedDict(w=np.ones(1), n=np.array(20, dtype=np.int64)), 3),
    ]
    strategy = FedAdam()

    # Act
    result = strategy.aggregate_train(1, current, updates)

    # Assert
    # (10 + 3 * 20) / 4 = 17.5, rounded half to even
    assert int(result["n"]) == 18
    assert "m.n" not in strategy.state_dict()


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: FedAdam(0.1, beta_1=0.5, tau=0.01), id="fedadam"),
        pytest.param(lambda: FedYogi(0.1, beta_2=0.9, tau=0.01), id="fedyogi"),
        pytest.param(lambda: FedAdagrad(0.1, beta_1=0.3, tau=0.01), id="fedadagrad"),
    ],
)
def test_fedopt_restored_state_continues_bit_for_bit(make: Callable[[], _FedOpt]) -> None:
    """A strategy restored from the round-1 checkpoint produces rounds 2 and 3 identically."""
    # Arrange
    rng = np.random.default_rng(7)
    current = OrderedDict(w=rng.normal(size=(2, 3)).astype(np.float32))
    rounds = [
        [
            ClientUpdate(c, OrderedDict(w=rng.normal(size=(2, 3)).astype(np.float32)), n)
            for c, n in (("a", 3), ("b", 5))
        ]
        for _ in range(3)
    ]
    original = make()
    original.initialize(current)
    x1 = original.aggregate_train(1, current, rounds[0])
    checkpoint = decode_parameters(encode(OrderedDict(original.state_dict())))
    x2 = original.aggregate_train(2, x1, rounds[1])
    x3 = original.aggregate_train(3, x2, rounds[2])
    restored = make()

    # Act
    restored.load_state_dict(checkpoint)
    y2 = restored.aggregate_train(2, x1, rounds[1])
    y3 = restored.aggregate_train(3, y2, rounds[2])

    # Assert
    assert np.array_equal(x2["w"], y2["w"])
    assert np.array_equal(x3["w"], y3["w"])
    for key, value in original.state_dict().items():
        assert np.array_equal(value, restored.state_dict()[key]), key


def test_fedopt_refuses_state_for_another_model() -> None:
    """Moments built for one model cannot step another one."""
    # Arrange
    strategy = FedAdam()
    strategy.initialize(OrderedDict(w=np.zeros(2)))
    current = OrderedDict(w=np.zeros(3))

    # Act / Assert
    with pytest.raises(AggregationError, match=r"moments") as info:
        strategy.aggregate_train(1, current, [ClientUpdate("a", OrderedDict(w=np.ones(3)), 1)])
    assert info.value.field == "current"


@pytest.mark.parametrize(
    "state",
    [
        pytest.param({"m.w": np.zeros(2), "v.w": np.ones(2)}, id="no-step"),
        pytest.param({"step": np.array([1]), "m.w": np.zeros(2)}, id="unpaired-moment"),
    ],
)
def test_fedopt_refuses_malformed_state(state: dict[str, np.ndarray]) -> None:
    """A state without its step counter or with unpaired moments is refused."""
    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        FedAdam().load_state_dict(state)
    assert info.value.field is not None
    assert info.value.field.startswith("state")


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        pytest.param(FedAdam, {"eta": 0.0}, "eta", id="eta-zero"),
        pytest.param(FedAdam, {"eta": -1.0}, "eta", id="eta-negative"),
        pytest.param(FedAdam, {"eta": float("nan")}, "eta", id="eta-nan"),
        pytest.param(FedAdam, {"beta_1": 1.0}, "beta_1", id="beta1-one"),
        pytest.param(FedYogi, {"beta_1": -0.1}, "beta_1", id="beta1-negative"),
        pytest.param(FedYogi, {"beta_2": 1.0}, "beta_2", id="beta2-one"),
        pytest.param(FedAdam, {"beta_2": "0.9"}, "beta_2", id="beta2-string"),
        pytest.param(FedAdagrad, {"tau": 0.0}, "tau", id="tau-zero"),
        pytest.param(FedAdagrad, {"beta_1": 1.5}, "beta_1", id="adagrad-beta1"),
    ],
)
def test_fedopt_refuses_out_of_range_hyperparameters(
    cls: type[_FedOpt], kwargs: dict[str, object], field: str
) -> None:
    """Each hyperparameter is checked at construction, naming it, its range and the value."""
    # Act / Assert
    with pytest.raises(InvalidInput, match=rf"`strategy\.{field}` must be .*; got ") as info:
        cls(**kwargs)
    assert info.value.field == f"strategy.{field}"


def test_fedopt_params_are_stored_unchanged() -> None:
    """get_params returns the arguments as given; FedAdagrad has no beta_2."""
    # Act
    adam = FedAdam(1, beta_1=0.8).get_params()
    adagrad = FedAdagrad().get_params()

    # Assert
    assert adam == {"eta": 1, "beta_1": 0.8, "beta_2": 0.99, "tau": 1e-3}
    assert adagrad == {"eta": 1e-2, "beta_1": 0.0, "tau": 1e-3}


def test_fedopt_initializes_itself_on_first_use() -> None:
    """Without initialize, the first step starts from m = 0 and v = tau^2 as well."""
    # Arrange
    updates = _clients_averaging_to(np.array([1.0, 7.0]))

    # Act
    result = FedAdam(0.6, beta_1=0.5, beta_2=0.5, tau=1.0).aggregate_train(1, X0, updates)

    # Assert
    # the first round of the FedAdam hand computation above
    np.testing.assert_allclose(result["w"], [0.15, 0.35], rtol=1e-12)
