"""TorchAdapter: parameters, training, prediction, validation and ONNX export."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest

from fedloop.core import InvalidInput, Signature, TensorSpec
from fedloop.learn import ModelAdapter, TorchAdapter, mlp
from fedloop.registry import infer_signature

NUM_FEATURES = 4


def _adapter(**kwargs: Any) -> TorchAdapter:
    return TorchAdapter(lambda: mlp(NUM_FEATURES, hidden=(8,)), num_features=NUM_FEATURES, **kwargs)


@pytest.fixture
def adapter() -> TorchAdapter:
    """Return a 4-8-1 MLP adapter with SGD."""
    return _adapter()


@pytest.fixture
def separable() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Return 256 rows whose label is whether the first two features sum above zero."""
    x = np.random.default_rng(0).normal(size=(256, NUM_FEATURES)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    return x, y


# -- construction ----------------------------------------------------------------------------


def test_adapter_satisfies_protocol(adapter: TorchAdapter) -> None:
    """TorchAdapter is a ModelAdapter."""
    # Act / Assert
    assert isinstance(adapter, ModelAdapter)


def test_adapter_accepts_a_module_instance() -> None:
    """An nn.Module instance is used as is."""
    # Arrange
    module = mlp(NUM_FEATURES, hidden=(2,))

    # Act
    adapter = TorchAdapter(module, num_features=NUM_FEATURES)

    # Assert
    assert adapter.module is module


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"lr": 0.0}, "lr", id="lr-zero"),
        pytest.param({"lr": -0.1}, "lr", id="lr-negative"),
        pytest.param({"lr": 11.0}, "lr", id="lr-too-big"),
        pytest.param({"lr": float("nan")}, "lr", id="lr-nan"),
        pytest.param({"optimizer": "rmsprop"}, "optimizer", id="optimizer"),
        pytest.param({"batch_size": 0}, "batch_size", id="batch-size"),
    ],
)
def test_bad_hyperparameters_are_refused(kwargs: dict[str, Any], field: str) -> None:
    """Out-of-range lr, unknown optimizer or batch_size < 1 raise InvalidInput naming it."""
    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        _adapter(**kwargs)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("in_features", "hidden"),
    [pytest.param(0, (4,), id="no-inputs"), pytest.param(4, (4, 0), id="empty-hidden-layer")],
)
def test_mlp_refuses_empty_layers(in_features: int, hidden: tuple[int, ...]) -> None:
    """mlp() with a layer width below 1 raises InvalidInput on hidden."""
    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        mlp(in_features, hidden=hidden)
    assert info.value.field == "hidden"


def test_params_record_hyperparameters() -> None:
    """The params attribute holds the hyperparameters for tracking."""
    # Act
    adapter = _adapter(lr=0.1, optimizer="adam", batch_size=16, seed=3)

    # Assert
    assert adapter.params == {"lr": 0.1, "optimizer": "adam", "batch_size": 16, "seed": 3}


# -- parameters ------------------------------------------------------------------------------


def test_get_parameters_names_follow_state_dict(adapter: TorchAdapter) -> None:
    """Parameters are named and ordered as the module's state dict, as float32 arrays."""
    # Act
    params = adapter.get_parameters()

    # Assert
    assert list(params) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert [p.shape for p in params.values()] == [(8, 4), (8,), (1, 8), (1,)]
    assert all(p.dtype == np.float32 for p in params.values())


def test_get_parameters_returns_copies(adapter: TorchAdapter) -> None:
    """Changing a returned array does not change the model."""
    # Arrange
    params = adapter.get_parameters()

    # Act
    params["0.bias"][:] = 99.0

    # Assert
    assert not np.any(adapter.get_parameters()["0.bias"] == 99.0)


def test_set_parameters_round_trips() -> None:
    """Parameters taken from one adapter and set on another make them predict the same."""
    # Arrange
    source, target = _adapter(seed=1), _adapter(seed=2)
    x = np.random.default_rng(0).normal(size=(5, NUM_FEATURES)).astype(np.float32)

    # Act
    target.set_parameters(source.get_parameters())

    # Assert
    for name, array in source.get_parameters().items():
        assert np.array_equal(target.get_parameters()[name], array)
    assert np.array_equal(target.predict_proba(x), source.predict_proba(x))


def test_set_parameters_accepts_any_tensor_order() -> None:
    """Tensors are matched by name, so a reordered mapping loads the same weights."""
    # Arrange
    source = TorchAdapter(lambda: mlp(4, hidden=(3,)), num_features=4, seed=1)
    target = TorchAdapter(lambda: mlp(4, hidden=(3,)), num_features=4, seed=2)
    reordered = OrderedDict(reversed(list(source.get_parameters().items())))

    # Act
    target.set_parameters(reordered)

    # Assert
    for name, array in source.get_parameters().items():
        np.testing.assert_array_equal(target.get_parameters()[name], array)


def test_set_parameters_casts_float64(adapter: TorchAdapter) -> None:
    """float64 arrays of the right shapes are loaded as float32."""
    # Arrange
    params = OrderedDict(
        (k, v.astype(np.float64) + 1.0) for k, v in adapter.get_parameters().items()
    )

    # Act
    adapter.set_parameters(params)

    # Assert
    loaded = adapter.get_parameters()
    assert all(v.dtype == np.float32 for v in loaded.values())
    assert np.allclose(loaded["0.bias"], params["0.bias"])


def test_set_parameters_with_missing_name_is_refused(adapter: TorchAdapter) -> None:
    """A parameter set without one of the model's tensors raises InvalidInput on parameters."""
    # Arrange
    params = adapter.get_parameters()
    del params["2.bias"]

    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        adapter.set_parameters(params)
    assert info.value.field == "parameters"


def test_set_parameters_with_extra_name_is_refused(adapter: TorchAdapter) -> None:
    """A parameter set with a tensor the model lacks raises InvalidInput on parameters."""
    # Arrange
    params = adapter.get_parameters()
    params["3.weight"] = np.zeros((1, 1), dtype=np.float32)

    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        adapter.set_parameters(params)
    assert info.value.field == "parameters"


def test_set_parameters_with_wrong_shape_is_refused(adapter: TorchAdapter) -> None:
    """A tensor of the wrong shape raises InvalidInput naming the tensor; nothing is loaded."""
    # Arrange
    before = adapter.get_parameters()
    params = adapter.get_parameters()
    params["0.bias"] = np.ones(8, dtype=np.float32)
    params["2.weight"] = np.zeros((8, 1), dtype=np.float32)

    # Act
    with pytest.raises(InvalidInput) as info:
        adapter.set_parameters(params)

    # Assert
    assert info.value.field == "parameters.2.weight"
    assert np.array_equal(adapter.get_parameters()["0.bias"], before["0.bias"])


def test_set_parameters_with_nan_is_refused(adapter: TorchAdapter) -> None:
    """A tensor with NaN raises InvalidInput naming the tensor."""
    # Arrange
    params = adapter.get_parameters()
    params["0.bias"][0] = np.nan

    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        adapter.set_parameters(params)
    assert info.value.field == "parameters['0.bias']"


# -- training --------------------------------------------------------------------------------


def test_fit_reduces_loss(
    separable: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]],
) -> None:
    """Training on a separable set lowers the loss and raises the AUC close to 1."""
    # Arrange
    x, y = separable
    adapter = _adapter(optimizer="adam", lr=0.05, batch_size=32)
    before = adapter.evaluate(x, y)["log_loss"]

    # Act
    result = adapter.fit(x, y, epochs=15)

    # Assert
    after = adapter.evaluate(x, y)
    assert after["log_loss"] < before / 2
    assert after["auc"] > 0.98
    assert result["num_examples"] == 256.0
    assert result["loss"] < before


def test_fit_calls_on_step_after_each_batch(
    adapter: TorchAdapter, separable: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]
) -> None:
    """on_step gets consecutive step numbers, one per mini-batch, with finite losses."""
    # Arrange
    x, y = separable
    calls: list[tuple[int, float]] = []

    # Act
    adapter.fit(x, y, epochs=2, on_step=lambda step, loss: calls.append((step, loss)))

    # Assert
    assert [step for step, _ in calls] == list(range(1, 2 * 256 // 64 + 1))
    assert all(np.isfinite(loss) for _, loss in calls)


def test_step_numbers_continue_across_fits(
    adapter: TorchAdapter, separable: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]
) -> None:
    """A second fit() continues the step count of the first."""
    # Arrange
    x, y = separable
    adapter.fit(x, y)
    steps: list[int] = []

    # Act
    adapter.fit(x, y, on_step=lambda step, _loss: steps.append(step))

    # Assert
    assert steps[0] == 256 // 64 + 1


def test_same_seed_gives_identical_adapters(
    separable: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]],
) -> None:
    """Two adapters with one seed start and train to identical parameters."""
    # Arrange
    x, y = separable
    first, second = _adapter(seed=7), _adapter(seed=7)

    # Act
    first.fit(x, y, epochs=2)
    second.fit(x, y, epochs=2)

    # Assert
    for name, array in first.get_parameters().items():
        assert np.array_equal(second.get_parameters()[name], array)


def test_different_seeds_give_different_initializations() -> None:
    """Two adapters with different seeds start from different parameters."""
    # Act
    first, second = _adapter(seed=1), _adapter(seed=2)

    # Assert
    assert not np.array_equal(
        first.get_parameters()["0.weight"], second.get_parameters()["0.weight"]
    )


@pytest.mark.parametrize(
    "x",
    [
        pytest.param(np.zeros((4, NUM_FEATURES + 1)), id="too-wide"),
        pytest.param(np.zeros((4, NUM_FEATURES - 1)), id="too-narrow"),
        pytest.param(np.zeros(NUM_FEATURES), id="one-dimensional"),
        pytest.param(np.zeros((2, 2, NUM_FEATURES)), id="three-dimensional"),
    ],
)
def test_fit_with_wrong_width_is_refused(adapter: TorchAdapter, x: npt.NDArray[np.float64]) -> None:
    """An x that is not (rows, num_features) raises InvalidInput on x."""
    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        adapter.fit(x, np.zeros(len(x)))
    assert info.value.field == "x"


@pytest.mark.parametrize("value", [pytest.param(np.nan, id="nan"), pytest.param(np.inf, id="inf")])
def test_non_finite_x_is_refused(adapter: TorchAdapter, value: float) -> None:
    """An x with NaN or infinity raises InvalidInput on x, for training and prediction."""
    # Arrange
    x = np.zeros((4, NUM_FEATURES), dtype=np.float32)
    x[2, 1] = value

    # Act / Assert
    with pytest.raises(InvalidInput) as fit_info:
        adapter.fit(x, np.zeros(4))
    with pytest.raises(InvalidInput) as predict_info:
        adapter.predict_proba(x)
    assert (fit_info.value.field, predict_info.value.field) == ("x", "x")


def test_fit_with_mismatched_labels_is_refused(adapter: TorchAdapter) -> None:
    """A y with a different number of rows than x raises InvalidInput on y."""
    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        adapter.fit(np.zeros((4, NUM_FEATURES)), np.zeros(3))
    assert info.value.field == "y"


def test_fit_with_zero_epochs_is_refused(adapter: TorchAdapter) -> None:
    """Training for fewer than one epoch raises InvalidInput on epochs."""
    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        adapter.fit(np.zeros((4, NUM_FEATURES)), np.zeros(4), epochs=0)
    assert info.value.field == "epochs"


# -- prediction and export -------------------------------------------------------------------


def test_predict_proba_returns_probabilities(adapter: TorchAdapter) -> None:
    """predict_proba returns one float64 probability in (0, 1) per row."""
    # Arrange
    x = np.random.default_rng(1).normal(size=(10, NUM_FEATURES))

    # Act
    p = adapter.predict_proba(x)

    # Assert
    assert (p.shape, p.dtype) == ((10,), np.float64)
    assert np.all((p > 0) & (p < 1))


def test_evaluate_returns_binary_metrics(
    adapter: TorchAdapter, separable: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]
) -> None:
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


def test_signature_describes_export(adapter: TorchAdapter) -> None:
    """signature() is the signature of the exported graph: float32 (batch, 4) -> (batch, 1)."""
    # Act
    signature = adapter.signature()

    # Assert
    assert signature == Signature(
        inputs=(TensorSpec(name="features", dtype="float32", shape=(None, NUM_FEATURES)),),
        outputs=(TensorSpec(name="probability", dtype="float32", shape=(None, 1)),),
    )
    assert infer_signature(adapter.to_onnx()) == signature


def test_onnx_export_matches_predict_proba(
    separable: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]],
) -> None:
    """The ONNX graph run in onnxruntime matches predict_proba within 1e-5 for any batch size."""
    # Arrange
    x, y = separable
    adapter = _adapter(input_name="x", output_name="p")
    adapter.fit(x, y)
    session = ort.InferenceSession(adapter.to_onnx(), providers=["CPUExecutionProvider"])

    # Act
    served = session.run(["p"], {"x": x[:37]})[0]

    # Assert
    assert served.shape == (37, 1)
    assert np.max(np.abs(served.reshape(-1) - adapter.predict_proba(x[:37]))) < 1e-5


def test_onnx_export_does_not_change_parameters(adapter: TorchAdapter) -> None:
    """Exporting does not change the parameters."""
    # Arrange
    before = adapter.get_parameters()

    # Act
    adapter.to_onnx()

    # Assert
    for name, array in adapter.get_parameters().items():
        assert np.array_equal(array, before[name])


def test_sgd_training_equals_torch_optim_sgd_bit_for_bit(
    separable: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]],
) -> None:
    """The adapter's plain SGD step gives exactly the weights torch.optim.SGD gives."""
    import torch
    from torch import nn

    # Arrange: the adapter, and a reference loop with the same init and the same batch order
    x, y = separable
    adapter = _adapter(lr=0.1, batch_size=32, seed=3)
    reference = _adapter(seed=3).module
    reference.load_state_dict(adapter.module.state_dict())
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(3))
    opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))

    # Act
    adapter.fit(x, y, epochs=1)
    for start in range(0, len(y), 32):
        idx = order[start : start + 32]
        opt.zero_grad(set_to_none=True)
        nn.BCEWithLogitsLoss()(reference(xt[idx]).reshape(-1), yt[idx]).backward()
        opt.step()

    # Assert
    got = adapter.module.state_dict()
    assert all(torch.equal(got[k], v) for k, v in reference.state_dict().items())


def test_adam_still_trains(
    separable: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]],
) -> None:
    """optimizer="adam" trains with torch.optim.Adam and lowers the loss."""
    # Arrange
    x, y = separable
    adapter = _adapter(optimizer="adam", lr=0.01)

    # Act
    first = adapter.fit(x, y, epochs=1)["loss"]
    last = adapter.fit(x, y, epochs=5)["loss"]

    # Assert
    assert last < first
