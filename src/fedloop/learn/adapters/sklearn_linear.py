"""``SklearnLinearAdapter``: SGD logistic regression (scikit-learn) behind the ModelAdapter protocol."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.linear_model import SGDClassifier

from fedloop.core import InvalidInput, Parameters, Signature, TensorSpec, validate_parameters
from fedloop.learn.adapters.base import StepCallback
from fedloop.learn.metrics import binary_metrics

__all__ = ["SklearnLinearAdapter"]

_CLASSES = np.array([0, 1], dtype=np.int64)
_ONNX_OPSET = 17
#: The lowest IR version that carries opset 17, so older onnxruntime builds load the graph too.
_ONNX_IR_VERSION = 8


def _sigmoid(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Return 1 / (1 + exp(-z)) without overflow for large |z|."""
    return np.exp(-np.logaddexp(0.0, -z))


class SklearnLinearAdapter:
    """Train a binary logistic regression with scikit-learn's ``SGDClassifier(loss="log_loss")``.

    Mini-batches go through ``partial_fit``, so the model trains for a chosen number of local
    epochs and its two tensors can be averaged across clients. Training starts from zero weights
    (the ``seed`` drives only the shuffling). Parameters are float64, as scikit-learn keeps them;
    the ONNX export takes and returns float32 but computes in float64 inside, so served
    probabilities equal :meth:`predict_proba` up to float32 rounding.

    Parameters
    ----------
    num_features : int
        Input width, >= 1.
    lr : float, default 0.01
        Constant SGD learning rate (``eta0``), in (0, 10].
    alpha : float, default 1e-4
        L2 penalty strength, >= 0 (scikit-learn's ``alpha``).
    batch_size : int, default 64
        Rows per ``partial_fit`` call, >= 1.
    seed : int, default 0
        Seed for the mini-batch order.
    input_name, output_name : str
        Tensor names in the serving graph (distinct, non-empty).

    Raises
    ------
    InvalidInput
        Naming the first hyperparameter out of range.

    Example
    -------
    >>> adapter = SklearnLinearAdapter(30)  # doctest: +SKIP
    >>> adapter.fit(x_train, y_train, epochs=1)
    >>> adapter.evaluate(x_test, y_test)["auc"]
    """

    def __init__(
        self,
        num_features: int,
        *,
        lr: float = 0.01,
        alpha: float = 1e-4,
        batch_size: int = 64,
        seed: int = 0,
        input_name: str = "features",
        output_name: str = "probability",
    ) -> None:
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise InvalidInput(
                f"`num_features` must be an integer >= 1; got {num_features!r}.",
                field="num_features",
                value=num_features,
            )
        if not 0 < lr <= 10:
            raise InvalidInput(f"`lr` must be in (0, 10]; got {lr}.", field="lr", value=lr)
        if not (math.isfinite(alpha) and alpha >= 0):
            raise InvalidInput(
                f"`alpha` must be a finite float >= 0; got {alpha}.", field="alpha", value=alpha
            )
        if batch_size < 1:
            raise InvalidInput(f"`batch_size` must be >= 1; got {batch_size}.", field="batch_size")
        if not input_name or not output_name or input_name == output_name:
            raise InvalidInput(
                f"`input_name` and `output_name` must be distinct, non-empty names; got "
                f"{input_name!r} and {output_name!r}.",
                field="output_name",
            )
        self.num_features = num_features
        self.batch_size = batch_size
        self.input_name = input_name
        self.output_name = output_name
        self.params: dict[str, Any] = {
            "lr": lr,
            "alpha": alpha,
            "batch_size": batch_size,
            "seed": seed,
        }
        self.estimator = SGDClassifier(
            loss="log_loss",
            penalty="l2",
            alpha=alpha,
            learning_rate="constant",
            eta0=lr,
            shuffle=False,  # the adapter shuffles the mini-batch order itself
            random_state=seed,
        )
        # Seed the fitted state so that partial_fit continues from these weights (the usual way
        # to warm-start an sklearn linear model for federated learning).
        self.estimator.classes_ = _CLASSES.copy()
        self.estimator.coef_ = np.zeros((1, num_features), dtype=np.float64)
        self.estimator.intercept_ = np.zeros(1, dtype=np.float64)
        self._rng = np.random.default_rng(seed)
        self._steps = 0

    # -- parameters ----------------------------------------------------------------------------
    def get_parameters(self) -> Parameters:
        """Return copies of ``coef`` (1, num_features) and ``intercept`` (1,), both float64."""
        return OrderedDict(
            coef=np.array(self.estimator.coef_, dtype=np.float64),
            intercept=np.array(self.estimator.intercept_, dtype=np.float64),
        )

    def set_parameters(self, parameters: Parameters) -> None:
        """Load ``coef`` and ``intercept`` (cast to float64); nothing changes if one is refused.

        Raises
        ------
        InvalidInput
            With ``field="parameters"`` for missing or extra names, ``parameters.<name>`` for a
            wrong shape or a non-numeric dtype, ``parameters['<name>']`` for NaN or infinity.
        """
        params = validate_parameters(parameters)
        expected = {"coef": (1, self.num_features), "intercept": (1,)}
        if set(params) != set(expected):
            missing, extra = (
                sorted(set(expected) - set(params)),
                sorted(set(params) - set(expected)),
            )
            raise InvalidInput(
                f"parameter names do not match the model (missing: {missing}, "
                f"unexpected: {extra[:3]}).",
                field="parameters",
                hint="Load the coef and intercept of a SklearnLinearAdapter.",
            )
        for name, shape in expected.items():
            array = params[name]
            if tuple(array.shape) != shape:
                raise InvalidInput(
                    f"`parameters[{name!r}]` has shape {tuple(array.shape)}; the model needs "
                    f"{shape}.",
                    field=f"parameters.{name}",
                    hint="Load weights built for the same num_features.",
                )
            if not (
                np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
            ):
                raise InvalidInput(
                    f"`parameters[{name!r}]` has dtype {array.dtype}; it must be a real number type.",
                    field=f"parameters.{name}",
                )
        self.estimator.coef_ = np.array(params["coef"], dtype=np.float64, order="C")
        self.estimator.intercept_ = np.array(params["intercept"], dtype=np.float64)

    # -- training ------------------------------------------------------------------------------
    def _features(self, x: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        xa = np.asarray(x, dtype=np.float64)
        if xa.ndim != 2 or xa.shape[1] != self.num_features:
            raise InvalidInput(
                f"`x` must have shape (rows, {self.num_features}); got {xa.shape}.",
                field="x",
                hint="Pass the same feature columns the model was built for.",
            )
        if not np.isfinite(xa).all():
            raise InvalidInput("`x` contains NaN or infinite values.", field="x")
        return xa

    def _labels(self, y: npt.NDArray[np.generic], rows: int) -> npt.NDArray[np.int64]:
        ya = np.asarray(y).reshape(-1)
        if ya.shape[0] != rows:
            raise InvalidInput(f"`y` has {ya.shape[0]} rows but `x` has {rows}.", field="y")
        if not np.isin(ya, _CLASSES).all():
            raise InvalidInput(
                f"`y` must hold only 0 and 1; got values {np.unique(ya)[:5].tolist()}.",
                field="y",
                hint="Encode the positive class as 1 and the negative class as 0.",
            )
        return ya.astype(np.int64)

    def _log_loss(self, x: npt.NDArray[np.float64], y: npt.NDArray[np.int64]) -> float:
        """Mean log loss of the current weights: log(1 + e^z) - y z, computed without overflow."""
        z = x @ self.estimator.coef_[0] + self.estimator.intercept_[0]
        return float(np.mean(np.logaddexp(0.0, z) - y * z))

    def fit(
        self,
        x: npt.NDArray[np.floating],
        y: npt.NDArray[np.generic],
        *,
        epochs: int = 1,
        on_step: StepCallback | None = None,
        proximal_mu: float = 0.0,
    ) -> dict[str, float]:
        """Train for ``epochs`` passes of ``partial_fit`` over shuffled mini-batches.

        Parameters
        ----------
        x : ndarray of shape (rows, num_features)
            Features.
        y : ndarray of shape (rows,)
            0/1 labels.
        epochs : int, default 1
            Passes over the data, >= 1.
        on_step : callable or None
            Called as ``on_step(step, loss)`` after each mini-batch, with the batch's log loss
            before the update; steps continue across calls.
        proximal_mu : float, default 0.0
            FedProx coefficient, >= 0. SGDClassifier has no hook for an extra loss term, so after
            each mini-batch of ``n`` rows the weights are pulled toward ``w_start`` (their value
            when ``fit`` was called) as ``w = w_start + (w - w_start) * (1 - lr * mu) ** n``:
            the step ``w -= lr * mu * (w - w_start)`` once per row, just as scikit-learn applies
            its own L2 penalty per row (a factor below 0 is clipped to 0). Intercept included.

        Returns
        -------
        dict[str, float]
            ``loss`` (log loss on all of ``x`` after the last epoch, without penalty terms) and
            ``num_examples``.

        Raises
        ------
        InvalidInput
            When ``epochs < 1``, ``proximal_mu`` is negative or not finite, ``x`` is not
            (rows, num_features) and finite, or ``y`` is not 0/1 of the same length.
        """
        if epochs < 1:
            raise InvalidInput(f"`epochs` must be >= 1; got {epochs}.", field="epochs")
        if not (math.isfinite(proximal_mu) and proximal_mu >= 0):
            raise InvalidInput(
                f"`proximal_mu` must be a finite float >= 0; got {proximal_mu!r}.",
                field="proximal_mu",
                value=proximal_mu,
                hint="Use 0 for FedAvg; FedProx papers use 0.001 to 1.",
            )
        xa = self._features(x)
        ya = self._labels(y, xa.shape[0])
        est = self.estimator
        coef_start, intercept_start = est.coef_.copy(), est.intercept_.copy()
        pull_per_row = max(0.0, 1.0 - float(self.params["lr"]) * proximal_mu)
        for _ in range(epochs):
            order = self._rng.permutation(xa.shape[0])
            for start in range(0, xa.shape[0], self.batch_size):
                idx = order[start : start + self.batch_size]
                xb, yb = xa[idx], ya[idx]
                value = self._log_loss(xb, yb) if on_step is not None else math.nan
                est.partial_fit(xb, yb, classes=_CLASSES)
                if proximal_mu > 0:
                    keep = pull_per_row ** len(idx)
                    est.coef_ = coef_start + (est.coef_ - coef_start) * keep
                    est.intercept_ = intercept_start + (est.intercept_ - intercept_start) * keep
                self._steps += 1
                if on_step is not None:
                    on_step(self._steps, value)
        return {"loss": self._log_loss(xa, ya), "num_examples": float(xa.shape[0])}

    def predict_proba(self, x: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        """Return the probability of class 1 for each row (float64)."""
        xa = self._features(x)
        return _sigmoid(xa @ self.estimator.coef_[0] + self.estimator.intercept_[0])

    def evaluate(self, x: npt.NDArray[np.floating], y: npt.NDArray[np.generic]) -> dict[str, float]:
        """Return :func:`fedloop.learn.binary_metrics` on held-out data."""
        return binary_metrics(y, self.predict_proba(x))

    # -- export --------------------------------------------------------------------------------
    def signature(self) -> Signature:
        """Return the serving signature: float32 (batch, num_features) -> float32 (batch, 1)."""
        return Signature(
            inputs=(
                TensorSpec(name=self.input_name, dtype="float32", shape=(None, self.num_features)),
            ),
            outputs=(TensorSpec(name=self.output_name, dtype="float32", shape=(None, 1)),),
        )

    def to_onnx(self) -> bytes:
        """Return the model as ONNX: Cast, Gemm, Sigmoid, Cast (opset 17, dynamic batch).

        The graph casts the float32 input to float64, applies the float64 weights and casts the
        probability back to float32, so it matches :meth:`predict_proba` within 1e-7.
        """
        params = self.get_parameters()
        prefix = "fedloop_linear."  # internal names cannot collide with input_name/output_name
        coef, intercept = f"{prefix}coef", f"{prefix}intercept"
        nodes = [
            helper.make_node("Cast", [self.input_name], [f"{prefix}x64"], to=TensorProto.DOUBLE),
            helper.make_node(
                "Gemm", [f"{prefix}x64", coef, intercept], [f"{prefix}logit"], transB=1
            ),
            helper.make_node("Sigmoid", [f"{prefix}logit"], [f"{prefix}p64"]),
            helper.make_node("Cast", [f"{prefix}p64"], [self.output_name], to=TensorProto.FLOAT),
        ]
        graph = helper.make_graph(
            nodes,
            "fedloop_sklearn_linear",
            inputs=[
                helper.make_tensor_value_info(
                    self.input_name, TensorProto.FLOAT, ["batch", self.num_features]
                )
            ],
            outputs=[
                helper.make_tensor_value_info(self.output_name, TensorProto.FLOAT, ["batch", 1])
            ],
            initializer=[
                numpy_helper.from_array(params["coef"], name=coef),
                numpy_helper.from_array(params["intercept"], name=intercept),
            ],
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", _ONNX_OPSET)],
            producer_name="fedloop",
        )
        model.ir_version = _ONNX_IR_VERSION
        onnx.checker.check_model(model)
        data: bytes = model.SerializeToString()
        return data
