"""The ``ModelAdapter`` protocol: what fedloop needs of a trainable model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from fedloop.core import Parameters, Signature

__all__ = ["ModelAdapter", "StepCallback"]

#: Called after each optimizer step with (step, loss).
StepCallback = Callable[[int, float], None]


@runtime_checkable
class ModelAdapter(Protocol):
    """A model fedloop can train locally, ship as parameters and export for serving."""

    def get_parameters(self) -> Parameters:
        """Return a copy of the model's parameters (name -> array, in a stable order)."""
        ...

    def set_parameters(self, parameters: Parameters) -> None:
        """Load parameters; names, shapes and dtypes must match."""
        ...

    def fit(
        self,
        x: npt.NDArray[np.floating],
        y: npt.NDArray[np.generic],
        *,
        epochs: int = 1,
        on_step: StepCallback | None = None,
        proximal_mu: float = 0.0,
    ) -> dict[str, float]:
        """Train on local data; return training metrics (``loss``, ``num_examples``).

        ``proximal_mu`` > 0 adds the FedProx term ``mu / 2 * ||w - w_start||^2`` (``w_start``:
        the parameters when ``fit`` was called); 0 is plain local training.
        """
        ...

    def predict_proba(self, x: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        """Return the probability of class 1 for each row."""
        ...

    def evaluate(self, x: npt.NDArray[np.floating], y: npt.NDArray[np.generic]) -> dict[str, float]:
        """Return evaluation metrics on held-out data."""
        ...

    def signature(self) -> Signature:
        """Return the serving signature (inputs and outputs of :meth:`to_onnx`)."""
        ...

    def to_onnx(self) -> bytes:
        """Return the serving graph as ONNX bytes."""
        ...
