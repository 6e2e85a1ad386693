"""TorchAdapter for resumable training: optimizer state, caller-ordered epochs, device, mlp_adapter."""

from __future__ import annotations

import numpy as np
import pytest

from fedloop.core import InvalidInput
from fedloop.learn import mlp_adapter


def _data(rows: int = 256) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 4)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


def test_adam_state_round_trips_so_training_continues_identically() -> None:
    """Weights + Adam state copied to a fresh adapter train on exactly like the original."""
    # Arrange
    x, y = _data()
    first = mlp_adapter(4, (8,), optimizer="adam", seed=1)
    first.fit(x, y, shuffle=False)
    second = mlp_adapter(4, (8,), optimizer="adam", seed=2)
    second.set_parameters(first.get_parameters())

    # Act
    state = first.get_optimizer_state()
    second.set_optimizer_state(state)
    first.fit(x, y, shuffle=False)
    second.fit(x, y, shuffle=False)

    # Assert
    assert {name.rsplit(".", 1)[1] for name in state} == {"step", "exp_avg", "exp_avg_sq"}
    for name, array in first.get_parameters().items():
        np.testing.assert_array_equal(second.get_parameters()[name], array)


def test_plain_sgd_has_no_state_and_refuses_some() -> None:
    """SGD keeps nothing; loading Adam state into it is a typed error."""
    # Arrange
    x, y = _data()
    adam = mlp_adapter(4, (8,), optimizer="adam")
    adam.fit(x, y)
    sgd = mlp_adapter(4, (8,))

    # Act / Assert
    assert len(sgd.get_optimizer_state()) == 0
    sgd.set_optimizer_state(sgd.get_optimizer_state())
    with pytest.raises(InvalidInput, match=r"sgd keeps none") as caught:
        sgd.set_optimizer_state(adam.get_optimizer_state())
    assert caught.value.field == "optimizer_state"


@pytest.mark.parametrize(
    "name",
    [pytest.param("exp_avg", id="no-index"), pytest.param("state.x.exp_avg", id="bad-index")],
)
def test_malformed_optimizer_state_is_refused(name: str) -> None:
    """Tensors not named state.<index>.<key> are refused."""
    # Arrange
    adam = mlp_adapter(4, (8,), optimizer="adam")

    # Act / Assert
    with pytest.raises(InvalidInput, match=r"state\.<index>\.<key>"):
        adam.set_optimizer_state({name: np.zeros(3, dtype=np.float32)})


def test_optimizer_state_of_another_model_is_refused() -> None:
    """Adam state with shapes of another architecture does not load."""
    # Arrange
    x, y = _data()
    big = mlp_adapter(4, (16,), optimizer="adam")
    big.fit(x, y)
    small = mlp_adapter(4, (8,), optimizer="adam")
    state = {k: v for k, v in big.get_optimizer_state().items() if k.startswith("state.0.")}
    state |= {"state.9.step": np.array(1.0, dtype=np.float32)}

    # Act / Assert
    with pytest.raises(InvalidInput, match=r"does not fit the model"):
        small.set_optimizer_state(state)


def test_unshuffled_fit_takes_rows_in_the_given_order() -> None:
    """shuffle=False trains on the rows as given: two adapters with equal seeds agree exactly."""
    # Arrange
    x, y = _data()
    order = np.random.default_rng(5).permutation(len(y))
    a, b = mlp_adapter(4, (8,)), mlp_adapter(4, (8,))

    # Act
    a.fit(x[order], y[order], shuffle=False)
    b.fit(x[order], y[order], shuffle=False)
    c = mlp_adapter(4, (8,))
    c.fit(x, y, shuffle=False)

    # Assert
    np.testing.assert_array_equal(a.get_parameters()["0.weight"], b.get_parameters()["0.weight"])
    assert not np.array_equal(a.get_parameters()["0.weight"], c.get_parameters()["0.weight"])


def test_to_cpu_keeps_training_and_export_working() -> None:
    """Moving to a device (the CPU here) keeps fit, predict and the ONNX export working."""
    # Arrange
    x, y = _data()
    adapter = mlp_adapter(4, (8,)).to("cpu")

    # Act
    adapter.fit(x, y)
    scores = adapter.predict_proba(x)

    # Assert
    assert str(adapter.device) == "cpu"
    assert scores.shape == (len(y),)
    assert adapter.to_onnx()[:4]
