"""Reference profiles of model versions: built from training rows (central) and attached."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from fedloop.core import InvalidInput
from fedloop.learn import DataProfile, columns_from_tensors, profile_columns
from fedloop.registry import ModelRegistry
from fedloop.store import ModelVersion

__all__ = ["attach_reference", "model_columns", "predict_onnx", "prediction_columns"]


def predict_onnx(onnx_model: bytes, x: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Run a single-input graph on ``x`` and return its first output (the served prediction).

    Raises
    ------
    InvalidInput
        When ``x`` does not fit the graph's input.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(bytes(onnx_model), providers=["CPUExecutionProvider"])
    first = session.get_inputs()[0]
    try:
        out: npt.NDArray[Any] = session.run(None, {first.name: x.astype(np.float32, copy=False)})[0]
    except Exception as err:  # onnxruntime reports bad feeds as generic exceptions
        raise InvalidInput(
            f"the model cannot run on data of shape {x.shape}: {err}.",
            field="data",
            hint=f"Give the columns the model's input {first.name!r} expects, in order.",
        ) from err
    return out


def model_columns(
    version: ModelVersion, x: npt.NDArray[Any], predictions: npt.NDArray[Any] | None
) -> dict[str, npt.NDArray[Any]]:
    """Name a version's input rows (and its predictions) as the payload log's columns are named.

    The first input of the signature becomes ``name[j]`` per column (or ``name`` for one
    column) and the first output likewise, so a reference built here compares directly with
    the windows the monitor builds from live traffic.
    """
    tensors = {version.signature.inputs[0].name: x}
    if predictions is not None:
        tensors[version.signature.outputs[0].name] = predictions
    return columns_from_tensors(tensors)


def prediction_columns(version: ModelVersion, columns: Iterable[str]) -> tuple[str, ...]:
    """Return the columns that hold the version's outputs (``probability``, ``score[1]``...).

    They are tested for drift with the features and reported as prediction drift.
    """
    outputs = {spec.name for spec in version.signature.outputs}
    return tuple(c for c in columns if c.split("[", 1)[0] in outputs)


def attach_reference(
    registry: ModelRegistry,
    version: ModelVersion,
    x: npt.NDArray[Any],
    *,
    num_bins: int = 100,
    sample_size: int = 2000,
    seed: int = 0,
    actor: str = "system",
) -> DataProfile:
    """Profile the rows a version was trained on, with its own predictions, and attach it.

    Parameters
    ----------
    registry : ModelRegistry
        Where the version lives.
    version : ModelVersion
        The version (its ONNX graph scores ``x`` for the prediction column).
    x : ndarray, shape (rows, features)
        Training (or held-out reference) rows, in the model's input order.
    num_bins : int, default 100
        Bins per numeric column.
    sample_size : int, default 2000
        Rows kept for the multivariate test (0: none).
    seed : int, default 0
        Seed of the sample.
    actor : str
        Who attaches (audit).

    Returns
    -------
    DataProfile
        The attached reference (source ``central``).
    """
    predictions = predict_onnx(registry.load_onnx(version), np.asarray(x))
    profile = profile_columns(
        model_columns(version, np.asarray(x), predictions),
        num_bins=num_bins,
        sample_size=sample_size,
        seed=seed,
    )
    registry.attach_profile(version, profile, source="central", actor=actor)
    return profile
