"""What ``fedloop federated serve`` and ``client`` share: model specs, adapters, data tables."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from fedloop.core import ConfigError, InvalidInput

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from fedloop.learn import ModelAdapter

__all__ = [
    "MODEL_HELP",
    "adapter_factory",
    "default_model_name",
    "load_table_for",
    "parse_model_spec",
]

MODEL_HELP = "Model spec: mlp:<inputs>,<hidden>,... (e.g. mlp:30,64,32)."


def parse_model_spec(spec: str) -> tuple[int, tuple[int, ...]]:
    """Parse ``mlp:<inputs>,<hidden>,...`` into the input width and the hidden widths.

    Raises
    ------
    ConfigError
        When the spec is not of that form.
    """
    kind, _, dims = spec.partition(":")
    try:
        widths = tuple(int(d) for d in dims.split(",")) if dims else ()
    except ValueError:
        widths = ()
    if kind != "mlp" or not widths or min(widths) < 1:
        raise ConfigError(
            f"`--model` must look like mlp:<inputs>,<hidden>,...; got {spec!r}.",
            field="model",
            value=spec,
            hint="For the fraud data: --model mlp:30,64,32.",
        )
    return widths[0], widths[1:]


def default_model_name(spec: str) -> str:
    """Return the registered model name ``serve`` uses for a model spec (``federated-mlp-30-64``).

    Raises
    ------
    ConfigError
        When the spec is malformed (see :func:`parse_model_spec`).
    """
    in_features, hidden = parse_model_spec(spec)
    return "-".join(["federated-mlp", *(str(w) for w in (in_features, *hidden))])


def adapter_factory(spec: str) -> tuple[int, Callable[[int], ModelAdapter]]:
    """Return the model's input width and a factory of seeded torch adapters for ``spec``.

    Raises
    ------
    ConfigError
        When the spec is malformed (see :func:`parse_model_spec`).
    """
    in_features, hidden = parse_model_spec(spec)
    from fedloop.learn import TorchAdapter, mlp

    def make(seed: int) -> ModelAdapter:
        return TorchAdapter(lambda: mlp(in_features, hidden), num_features=in_features, seed=seed)

    return in_features, make


def load_table_for(
    path: Path, label: str, in_features: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Read a CSV/Parquet table with its label column, checking its width against the model.

    Raises
    ------
    InvalidInput
        When the table has another number of feature columns than the model takes.
    """
    from fedloop.federated.datafiles import load_table

    x, y = load_table(path, label=label)
    if x.shape[1] != in_features:
        raise InvalidInput(
            f"{path} has {x.shape[1]} feature columns but the model takes {in_features}.",
            field="model",
            hint=f"Use --model mlp:{x.shape[1]},... or drop the extra columns.",
        )
    return x, y
