"""FedBuff: staleness weights, the buffer, the model history and checkpoints."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from fedloop.core import (
    AggregationError,
    FedloopWarning,
    InvalidInput,
    decode_parameters,
    encode_parameters,
)
from fedloop.federated.strategies import ClientUpdate, FedBuff

X0 = OrderedDict(w=np.zeros(2))


def _update(client_id: str, values: list[float], base_round: int) -> ClientUpdate:
    w = np.array(values, dtype=np.float64)
    return ClientUpdate(client_id, OrderedDict(w=w), 1, base_round=base_round)


@pytest.mark.parametrize(
    ("kwargs", "staleness", "expected"),
    [
        pytest.param({}, 0, 1.0, id="polynomial-fresh"),
        pytest.param({}, 3, 0.5, id="polynomial-1/sqrt(4)"),
        pytest.param({"staleness_exponent": 1.0}, 1, 0.5, id="polynomial-a1"),
        pytest.param({"staleness": "constant"}, 9, 1.0, id="constant"),
        pytest.param({"staleness": "hinge"}, 4, 1.0, id="hinge-at-cutoff"),
        pytest.param({"staleness": "hinge"}, 5, 1 / 11, id="hinge-1/(10*1+1)"),
        pytest.param(
            {"staleness": "hinge", "staleness_slope": 0.5, "staleness_cutoff": 0},
            2,
            0.5,
            id="hinge-1/(0.5*2+1)",
        ),
    ],
)
def test_fedbuff_staleness_weights(
    kwargs: dict[str, object], staleness: int, expected: float
) -> None:
    """Polynomial (1+s)^-a, constant 1, hinge 1 up to b then 1/(a(s-b)+1)."""
    # Arrange
    strategy = FedBuff(1, **kwargs)  # type: ignore[arg-type]

    # Act
    weight = strategy.staleness_weight(staleness)

    # Assert
    assert weight == pytest.approx(expected, rel=1e-15)


def test_fedbuff_keeps_the_model_until_the_buffer_is_full() -> None:
    """Two updates in a buffer of three leave the model unchanged."""
    # Arrange
    strategy = FedBuff(3)
    strategy.initialize(X0)

    # Act
    result = strategy.aggregate_train(1, X0, [_update("a", [3, 0], 0), _update("b", [0, 3], 0)])

    # Assert
    np.testing.assert_array_equal(result["w"], X0["w"])
    assert strategy.state_dict()["count"].tolist() == [2]


def test_fedbuff_applies_the_mean_delta_when_the_buffer_fills() -> None:
    """The third update triggers x + server_lr * mean(delta) and empties the buffer."""
    # Arrange
    strategy = FedBuff(3, server_lr=0.5)
    strategy.initialize(X0)
    x1 = strategy.aggregate_train(1, X0, [_update("a", [3, 0], 0), _update("b", [0, 3], 0)])

    # Act
    x2 = strategy.aggregate_train(2, x1, [_update("c", [3, 3], 1)])

    # Assert
    # The model did not change in round 1, so c (base_round 1) is fresh: every weight is 1.
    # mean delta = ([3, 0] + [0, 3] + [3, 3]) / 3 = [2, 2]; x = 0 + 0.5 * [2, 2]
    np.testing.assert_array_equal(x2["w"], [1.0, 1.0])
    assert strategy.state_dict()["count"].tolist() == [0]
    np.testing.assert_array_equal(strategy.state_dict()["buffer.w"], [0.0, 0.0])


def test_fedbuff_weighs_stale_deltas_against_their_own_base() -> None:
    """A stale delta is measured from the model it started from and down-weighted."""
    # Arrange
    strategy = FedBuff(2, staleness_exponent=1.0)
    strategy.initialize(X0)
    x1 = strategy.aggregate_train(1, X0, [_update("a", [2, 2], 0), _update("b", [2, 0], 0)])
    # x1 = 0 + ([2, 2] + [2, 0]) / 2 = [2, 1] (version 1)

    # Act
    x2 = strategy.aggregate_train(2, x1, [_update("c", [3, 3], 1), _update("d", [4, 0], 0)])

    # Assert
    # c is fresh: delta [3, 3] - [2, 1] = [1, 2], weight 1
    # d started from x0 one server step ago: delta [4, 0] - [0, 0], weight 1 / (1 + 1) = 0.5
    # x2 = [2, 1] + ([1, 2] + 0.5 * [4, 0]) / 2 = [2, 1] + [1.5, 1]
    np.testing.assert_array_equal(x1["w"], [2.0, 1.0])
    np.testing.assert_array_equal(x2["w"], [3.5, 2.0])


def test_fedbuff_drops_updates_older_than_max_staleness() -> None:
    """With max_staleness 1, an update from two server steps ago is dropped with a warning."""
    # Arrange
    strategy = FedBuff(1, max_staleness=1)
    strategy.initialize(X0)
    x1 = strategy.aggregate_train(1, X0, [_update("a", [1, 1], 0)])
    x2 = strategy.aggregate_train(2, x1, [_update("b", [2, 2], 1)])

    # Act
    with pytest.warns(FedloopWarning, match=r"dropped client 'c'"):
        x3 = strategy.aggregate_train(3, x2, [_update("c", [9, 9], 0)])

    # Assert
    np.testing.assert_array_equal(x3["w"], [2.0, 2.0])
    assert strategy.state_dict()["history.versions"].tolist() == [1, 2]


def test_fedbuff_history_is_bounded_by_max_staleness() -> None:
    """Only the last max_staleness + 1 global models are kept."""
    # Arrange
    strategy = FedBuff(1, max_staleness=2)
    strategy.initialize(X0)
    current = X0

    # Act
    for r in range(1, 6):
        current = strategy.aggregate_train(r, current, [_update("a", [float(r), 0.0], r - 1)])

    # Assert
    state = strategy.state_dict()
    assert state["history.versions"].tolist() == [3, 4, 5]
    assert sorted(k for k in state if k.startswith("history.") and k.endswith(".w")) == [
        "history.3.w",
        "history.4.w",
        "history.5.w",
    ]


@pytest.mark.parametrize(
    "base_round",
    [pytest.param(2, id="this-round"), pytest.param(-1, id="negative")],
)
def test_fedbuff_refuses_base_rounds_outside_the_past(base_round: int) -> None:
    """A base_round must be an earlier call's round_num (or 0)."""
    # Arrange
    strategy = FedBuff(2)
    strategy.initialize(X0)

    # Act / Assert
    with pytest.raises(AggregationError, match=r"base_round") as info:
        strategy.aggregate_train(2, X0, [_update("a", [1, 1], base_round)])
    assert info.value.field == "updates['a'].base_round"


def test_fedbuff_refuses_round_numbers_that_do_not_grow() -> None:
    """Calling again with the same round_num is refused before any state changes."""
    # Arrange
    strategy = FedBuff(2)
    strategy.initialize(X0)
    strategy.aggregate_train(3, X0, [_update("a", [1, 1], 0)])
    before = strategy.state_dict()

    # Act / Assert
    with pytest.raises(AggregationError, match=r"must increase") as info:
        strategy.aggregate_train(3, X0, [_update("b", [1, 1], 0)])
    assert info.value.field == "round_num"
    assert all(np.array_equal(v, strategy.state_dict()[k]) for k, v in before.items())


def test_fedbuff_restored_state_continues_bit_for_bit() -> None:
    """Restored from the round-1 checkpoint (buffer half full), rounds 2 and 3 are identical."""
    # Arrange
    rng = np.random.default_rng(3)
    current = OrderedDict(w=rng.normal(size=(2, 3)).astype(np.float32))
    rounds = [
        [
            ClientUpdate(
                c, OrderedDict(w=rng.normal(size=(2, 3)).astype(np.float32)), 1, base_round=b
            )
            for c, b in clients
        ]
        # round 1 half fills the buffer, round 2 fills it, round 3 brings a stale and a fresh one
        for clients in ([("a", 0)], [("b", 1)], [("c", 1), ("d", 2)])
    ]
    original = FedBuff(2, server_lr=0.7)
    original.initialize(current)
    x1 = original.aggregate_train(1, current, rounds[0])
    checkpoint = decode_parameters(encode_parameters(OrderedDict(original.state_dict())))
    x2 = original.aggregate_train(2, x1, rounds[1])
    x3 = original.aggregate_train(3, x2, rounds[2])
    restored = FedBuff(2, server_lr=0.7)

    # Act
    restored.load_state_dict(checkpoint)
    y2 = restored.aggregate_train(2, x1, rounds[1])
    y3 = restored.aggregate_train(3, y2, rounds[2])

    # Assert
    assert np.array_equal(x2["w"], y2["w"])
    assert np.array_equal(x3["w"], y3["w"])
    assert not np.array_equal(x3["w"], x2["w"])
    for key, value in original.state_dict().items():
        assert np.array_equal(value, restored.state_dict()[key]), key


def test_fedbuff_state_is_empty_before_use() -> None:
    """Without initialize, there is no state to checkpoint (the coordinator then initializes)."""
    # Act / Assert
    assert FedBuff(2).state_dict() == {}


def test_fedbuff_refuses_state_without_history() -> None:
    """A state missing its model history is refused."""
    # Arrange
    state = {"version": np.array([0]), "last_round": np.array([0]), "count": np.array([0])}

    # Act / Assert
    with pytest.raises(InvalidInput, match=r"history") as info:
        FedBuff(2).load_state_dict(state)
    assert info.value.field == "state"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"buffer_size": 0}, "buffer_size", id="buffer-zero"),
        pytest.param({"buffer_size": 2.0}, "buffer_size", id="buffer-float"),
        pytest.param({"server_lr": 0.0}, "server_lr", id="lr-zero"),
        pytest.param({"staleness": "linear"}, "staleness", id="unknown-staleness"),
        pytest.param({"staleness_exponent": -0.5}, "staleness_exponent", id="exponent"),
        pytest.param({"staleness_slope": -1.0}, "staleness_slope", id="slope"),
        pytest.param({"staleness_cutoff": -1}, "staleness_cutoff", id="cutoff"),
        pytest.param({"max_staleness": -1}, "max_staleness", id="max-staleness"),
    ],
)
def test_fedbuff_refuses_out_of_range_parameters(kwargs: dict[str, object], field: str) -> None:
    """Each parameter is checked at construction, naming it."""
    # Arrange
    arguments: dict[str, object] = {"buffer_size": 2, **kwargs}

    # Act / Assert
    with pytest.raises(InvalidInput, match=rf"`strategy\.{field}` must be ") as info:
        FedBuff(**arguments)  # type: ignore[arg-type]
    assert info.value.field == f"strategy.{field}"


def test_fedbuff_is_asynchronous_and_stores_params() -> None:
    """FedBuff is flagged asynchronous and returns its arguments as given."""
    # Arrange
    strategy = FedBuff(4, staleness="constant")

    # Act
    params = strategy.get_params()

    # Assert
    assert FedBuff.asynchronous is True
    assert params == {
        "buffer_size": 4,
        "server_lr": 1.0,
        "staleness": "constant",
        "staleness_exponent": 0.5,
        "staleness_slope": 10.0,
        "staleness_cutoff": 4,
        "max_staleness": 10,
    }


def test_fedbuff_initializes_itself_on_first_use() -> None:
    """Without initialize, the first model seen is version 0 and fresh updates weigh 1."""
    # Arrange
    strategy = FedBuff(1, staleness_exponent=1.0)

    # Act
    result = strategy.aggregate_train(4, X0, [_update("a", [2, 4], 3)])

    # Assert
    # x0 + ([2, 4] - x0) / 1
    np.testing.assert_array_equal(result["w"], [2.0, 4.0])
    assert strategy.state_dict()["history.versions"].tolist() == [0, 1]
