"""SklearnLinearAdapter: parameters, training, ONNX export; FedProx on both adapters."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest

from fedloop.core import InvalidInput, Signature, TensorSpec
from fedloop.learn import ModelAdapter, SklearnLinearAdapter
from fedloop.registry import check_onnx

NUM_FEATURES = 4

Data = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]


@pytest.fixture
def adapter() -> SklearnLinearAdapter:
    """Return an adapter for 4 features with the default hyperparameters."""
    return SklearnLinearAdapter(NUM_FEATURES)


@pytest.fixture
def separable() -> Data:
    """Return 512 rows whose label is whether the first two features sum above zero."""
    x = np.random.default_rng(0).normal(size=(512, NUM_FEATURES)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    return x, y


def _torch_adapter() -> ModelAdapter:
    from fedloop.learn import TorchAdapter, mlp

    return TorchAdapter(lambda: mlp(NUM_FEATURES, hidden=(8,)), num_features=NUM_FEATURES)


ADAPTERS: list[Any] = [
    pytest.param(lambda: SklearnLinearAdapter(NUM_FEATURES), id="sklearn-linear"),
    pytest.param(_torch_adapter, id="torch"),
]


def _distance(first: OrderedDict[str, Any], second: OrderedDict[str, Any]) -> float:
    """Return the Euclidean distance between two parameter sets."""
    return float(np.sqrt(sum(np.sum((first[k] - second[k]) ** 2) for k in first)))


# -- construction ------------------------------------------------------------------------------


def test_adapter_satisfies_protocol(adapter: SklearnLinearAdapter) -> None:
    """SklearnLinearAdapter is a ModelAdapter."""
    # Act / Assert
    assert isinstance(adapter, ModelAdapter)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"num_features": 0}, "num_features", id="no-features"),
        pytest.param({"lr": 0.0}, "lr", id="lr-zero"),
        pytest.param({"lr": float("nan")}, "lr", id="lr-nan"),
        pytest.param({"lr": 11.0}, "lr", id="lr-too-big"),
        pytest.param({"alpha": -1e-4}, "alpha", id="alpha-negative"),
        pytest.param({"batch_size": 0}, "batch_size", id="batch-size"),
        pytest.param({"input_name": "x", "output_name": "x"}, "output_name", id="same-names"),
    ],
)
def test_bad_hyperparameters_are_refused(kwargs: dict[str, Any], field: str) -> None:
    """Out-of-range hyperparameters raise InvalidInput naming the first one."""
    # Arrange
    arguments = {"num_features": NUM_FEATURES, **kwargs}

    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        SklearnLinearAdapter(**arguments)
    assert info.value.field == field


def test_params_record_hyperparameters() -> None:
    """The params attribute holds the hyperparameters for tracking."""
    # Act
    adapter = SklearnLinearAdapter(NUM_FEATURES, lr=0.1, alpha=0.0, batch_size=16, seed=3)

    # Assert
    assert adapter.params == {"lr": 0.1, "alpha": 0.0, "batch_size": 16, "seed": 3}


# -- parameters --------------------------------------------------------------------------------


def test_new_adapter_starts_from_zero_weights(adapter: SklearnLinearAdapter) -> None:
    """Before training, coef (1, F) and intercept (1,) are float64 zeros."""
    # Act
    params = adapter.get_parameters()

    # Assert
    assert list(params) == ["coef", "intercept"]
    assert [(p.shape, p.dtype) for p in params.values()] == [
        ((1, NUM_FEATURES), np.float64),
        ((1,), np.float64),
    ]
    assert not any(np.any(p) for p in params.values())


def test_get_parameters_returns_copies(adapter: SklearnLinearAdapter) -> None:
    """Changing a returned array does not change the model."""
    # Arrange
    params = adapter.get_parameters()

    # Act
    params["coef"][:] = 99.0

    # Assert
    assert not np.any(adapter.get_parameters()["coef"] == 99.0)


def test_set_parameters_round_trips(separable: Data) -> None:
    """Parameters taken from a trained adapter make a fresh one predict the same."""
    # Arrange
    x, y = separable
    source, target = SklearnLinearAdapter(NUM_FEATURES), SklearnLinearAdapter(NUM_FEATURES)
    source.fit(x, y)

    # Act
    target.set_parameters(source.get_parameters())

    # Assert
    for name, array in source.get_parameters().items():
        np.testing.assert_array_equal(target.get_parameters()[name], array)
    np.testing.assert_array_equal(target.predict_proba(x), source.predict_proba(x))


def test_set_parameters_casts_float32(adapter: SklearnLinearAdapter) -> None:
    """float32 arrays of the right shapes are loaded as float64."""
    # Arrange
    params = OrderedDict(
        coef=np.full((1, NUM_FEATURES), 0.5, dtype=np.float32),
        intercept=np.ones(1, dtype=np.float32),
    )

    # Act
    adapter.set_parameters(params)

    # Assert
    loaded = adapter.get_parameters()
    assert all(v.dtype == np.float64 for v in loaded.values())
    np.testing.assert_array_equal(loaded["coef"], params["coef"])


def test_training_continues_from_set_parameters(adapter: SklearnLinearAdapter) -> None:
    """fit() starts from the loaded weights, not from zeros."""
    # Arrange
    adapter.set_parameters(OrderedDict(coef=np.zeros((1, NUM_FEATURES)), intercept=np.full(1, 5.0)))
    x = np.random.default_rng(0).normal(size=(8, NUM_FEATURES))

    # Act
    adapter.fit(x, np.array([0, 1] * 4))

    # Assert
    assert adapter.get_parameters()["intercept"][0] > 4.0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param(lambda p: p.pop("intercept"), "parameters", id="missing-name"),
        pytest.param(
            lambda p: p.__setitem__("extra", np.zeros(1)), "parameters", id="unexpected-name"
        ),
        pytest.param(
            lambda p: p.__setitem__("coef", np.zeros((NUM_FEATURES, 1))),
            "parameters.coef",
            id="transposed-coef",
        ),
        pytest.param(
            lambda p: p.__setitem__("intercept", np.zeros(2)),
            "parameters.intercept",
            id="long-intercept",
        ),
        pytest.param(
            lambda p: p.__setitem__("coef", np.ones((1, NUM_FEATURES), dtype=bool)),
            "parameters.coef",
            id="bool-coef",
        ),
        pytest.param(
            lambda p: p.__setitem__("coef", np.full((1, NUM_FEATURES), np.nan)),
            "parameters['coef']",
            id="nan-coef",
        ),
    ],
)
def test_bad_parameters_are_refused_and_nothing_loads(
    adapter: SklearnLinearAdapter, change: Callable[[OrderedDict[str, Any]], object], field: str
) -> None:
    """Wrong names, shapes, dtypes or NaN raise InvalidInput naming the tensor; nothing loads."""
    # Arrange
    params = OrderedDict(coef=np.ones((1, NUM_FEATURES)), intercept=np.ones(1))
    change(params)

    # Act
    with pytest.raises(InvalidInput) as info:
        adapter.set_parameters(params)

    # Assert
    assert info.value.field == field
    assert not np.any(adapter.get_parameters()["coef"])


# -- training ----------------------------------------------------------------------------------


def test_fit_raises_auc_and_lowers_loss(adapter: SklearnLinearAdapter, separable: Data) -> None:
    """Training on a separable set lifts the AUC from 0.5 to near 1 and lowers the loss."""
    # Arrange
    x, y = separable
    before = adapter.evaluate(x, y)

    # Act
    result = adapter.fit(x, y, epochs=3)

    # Assert
    after = adapter.evaluate(x, y)
    assert before["auc"] == 0.5
    assert after["auc"] > 0.98
    assert result["loss"] < before["log_loss"] / 2
    assert result["num_examples"] == 512.0


def test_fit_reports_training_log_loss_after_the_epoch(
    adapter: SklearnLinearAdapter, separable: Data
) -> None:
    """The returned loss is the log loss of the trained model on the training rows."""
    # Arrange
    x, y = separable

    # Act
    result = adapter.fit(x, y)

    # Assert
    assert result["loss"] == pytest.approx(adapter.evaluate(x, y)["log_loss"], rel=1e-6)


def test_fit_calls_on_step_after_each_batch(adapter: SklearnLinearAdapter, separable: Data) -> None:
    """on_step gets consecutive step numbers, one per mini-batch, with finite losses."""
    # Arrange
    x, y = separable
    calls: list[tuple[int, float]] = []

    # Act
    adapter.fit(x, y, epochs=2, on_step=lambda step, loss: calls.append((step, loss)))

    # Assert
    assert [step for step, _ in calls] == list(range(1, 2 * 512 // 64 + 1))
    assert all(np.isfinite(loss) for _, loss in calls)


def test_step_numbers_continue_across_fits(adapter: SklearnLinearAdapter, separable: Data) -> None:
    """A second fit() continues the step count of the first."""
    # Arrange
    x, y = separable
    adapter.fit(x, y)
    steps: list[int] = []

    # Act
    adapter.fit(x, y, on_step=lambda step, _loss: steps.append(step))

    # Assert
    assert steps[0] == 512 // 64 + 1


def test_fit_accepts_a_single_class(adapter: SklearnLinearAdapter) -> None:
    """Rows of one class only (common on skewed clients) train without error or warning."""
    # Arrange
    x = np.random.default_rng(0).normal(size=(100, NUM_FEATURES))

    # Act
    adapter.fit(x, np.zeros(100, dtype=np.int64))

    # Assert
    assert np.all(adapter.predict_proba(x) < 0.5)


@pytest.mark.parametrize(
    ("seeds", "same"),
    [pytest.param((7, 7), True, id="same-seed"), pytest.param((1, 2), False, id="other-seed")],
)
def test_seed_fixes_the_batch_order(separable: Data, seeds: tuple[int, int], same: bool) -> None:
    """Adapters with one seed train to identical weights; different seeds differ."""
    # Arrange
    x, y = separable
    first, second = (SklearnLinearAdapter(NUM_FEATURES, seed=s) for s in seeds)

    # Act
    first.fit(x, y, epochs=2)
    second.fit(x, y, epochs=2)

    # Assert
    assert (_distance(first.get_parameters(), second.get_parameters()) == 0.0) is same


@pytest.mark.parametrize(
    ("x", "y", "field"),
    [
        pytest.param(np.zeros((4, NUM_FEATURES + 1)), np.zeros(4), "x", id="too-wide"),
        pytest.param(np.zeros(NUM_FEATURES), np.zeros(1), "x", id="one-dimensional"),
        pytest.param(np.full((4, NUM_FEATURES), np.nan), np.zeros(4), "x", id="nan"),
        pytest.param(np.full((4, NUM_FEATURES), np.inf), np.zeros(4), "x", id="inf"),
        pytest.param(np.zeros((4, NUM_FEATURES)), np.zeros(3), "y", id="short-labels"),
        pytest.param(np.zeros((4, NUM_FEATURES)), np.array([0, 1, 2, 1]), "y", id="label-two"),
        pytest.param(np.zeros((4, NUM_FEATURES)), np.array([0, 1, 0.5, 1]), "y", id="label-half"),
    ],
)
def test_fit_with_bad_data_is_refused(
    adapter: SklearnLinearAdapter,
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    field: str,
) -> None:
    """Malformed x or non-0/1 labels raise InvalidInput on x or y."""
    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        adapter.fit(x, y)
    assert info.value.field == field


def test_fit_with_zero_epochs_is_refused(adapter: SklearnLinearAdapter) -> None:
    """Training for fewer than one epoch raises InvalidInput on epochs."""
    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        adapter.fit(np.zeros((4, NUM_FEATURES)), np.zeros(4), epochs=0)
    assert info.value.field == "epochs"


# -- prediction and export ---------------------------------------------------------------------


def test_predict_proba_returns_probabilities(
    adapter: SklearnLinearAdapter, separable: Data
) -> None:
    """predict_proba returns one float64 probability in (0, 1) per row."""
    # Arrange
    x, y = separable
    adapter.fit(x, y)

    # Act
    p = adapter.predict_proba(x[:10])

    # Assert
    assert (p.shape, p.dtype) == ((10,), np.float64)
    assert np.all((p > 0) & (p < 1))


def test_predict_proba_refuses_wrong_width(adapter: SklearnLinearAdapter) -> None:
    """predict_proba on rows of the wrong width raises InvalidInput on x."""
    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        adapter.predict_proba(np.zeros((2, NUM_FEATURES - 1)))
    assert info.value.field == "x"


def test_evaluate_returns_binary_metrics(adapter: SklearnLinearAdapter, separable: Data) -> None:
    """evaluate() returns the binary metrics of the predictions."""
    # Arrange
    x, y = separable

    # Act
    metrics = adapter.evaluate(x, y)

    # Assert
    assert set(metrics) == {
        "accuracy",
        "precision",
        "recall",
        "auc",
        "average_precision",
        "log_loss",
    }


def test_signature_describes_export(adapter: SklearnLinearAdapter) -> None:
    """signature() matches the exported graph, which the registry accepts and can run."""
    # Act
    signature = adapter.signature()

    # Assert
    assert signature == Signature(
        inputs=(TensorSpec(name="features", dtype="float32", shape=(None, NUM_FEATURES)),),
        outputs=(TensorSpec(name="probability", dtype="float32", shape=(None, 1)),),
    )
    assert check_onnx(adapter.to_onnx(), signature) == signature


@pytest.mark.parametrize("rows", [pytest.param(1, id="one-row"), pytest.param(37, id="37-rows")])
def test_onnx_export_matches_predict_proba(separable: Data, rows: int) -> None:
    """The ONNX graph in onnxruntime matches predict_proba within 1e-6 for any batch size."""
    # Arrange
    x, y = separable
    adapter = SklearnLinearAdapter(NUM_FEATURES, input_name="x", output_name="p")
    adapter.fit(x, y, epochs=2)
    session = ort.InferenceSession(adapter.to_onnx(), providers=["CPUExecutionProvider"])

    # Act
    served = session.run(["p"], {"x": x[:rows]})[0]

    # Assert
    assert (served.shape, served.dtype) == ((rows, 1), np.float32)
    assert np.max(np.abs(served.reshape(-1) - adapter.predict_proba(x[:rows]))) < 1e-6


# -- FedProx (both adapters) -------------------------------------------------------------------


@pytest.mark.parametrize("make", ADAPTERS)
def test_proximal_term_keeps_weights_near_the_start(
    make: Callable[[], ModelAdapter], separable: Data
) -> None:
    """With a large proximal_mu, fit moves the weights less than with mu=0."""
    # Arrange
    x, y = separable
    free, proximal = make(), make()
    start = free.get_parameters()
    proximal.set_parameters(start)

    # Act
    free.fit(x, y, epochs=2)
    proximal.fit(x, y, epochs=2, proximal_mu=10.0)

    # Assert
    moved_free = _distance(free.get_parameters(), start)
    moved_proximal = _distance(proximal.get_parameters(), start)
    assert moved_proximal < moved_free / 4


@pytest.mark.parametrize("make", ADAPTERS)
def test_zero_proximal_mu_is_plain_training(
    make: Callable[[], ModelAdapter], separable: Data
) -> None:
    """proximal_mu=0 trains exactly as a fit without it."""
    # Arrange
    x, y = separable
    plain, zero = make(), make()

    # Act
    plain.fit(x, y)
    zero.fit(x, y, proximal_mu=0.0)

    # Assert
    assert _distance(plain.get_parameters(), zero.get_parameters()) == 0.0


@pytest.mark.parametrize("make", ADAPTERS)
@pytest.mark.parametrize(
    "mu",
    [
        pytest.param(-0.1, id="negative"),
        pytest.param(float("nan"), id="nan"),
        pytest.param(float("inf"), id="inf"),
    ],
)
def test_bad_proximal_mu_is_refused(make: Callable[[], ModelAdapter], mu: float) -> None:
    """A negative or non-finite proximal_mu raises InvalidInput on proximal_mu."""
    # Arrange
    adapter = make()

    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        adapter.fit(np.zeros((4, NUM_FEATURES)), np.zeros(4), proximal_mu=mu)
    assert info.value.field == "proximal_mu"
