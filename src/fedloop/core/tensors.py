"""The tensor codec: model parameters to and from safetensors bytes (never pickle)."""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
from safetensors import SafetensorError
from safetensors.numpy import load as _st_load
from safetensors.numpy import save as _st_save

from fedloop.core.errors import InvalidInput
from fedloop.core.types import DTYPES, Parameters

__all__ = ["decode_parameters", "encode_parameters", "fingerprint_arrays", "validate_parameters"]

_ORDER_KEY = "fedloop.order"


def validate_parameters(
    params: Mapping[str, object], *, field: str = "parameters", require_finite: bool = True
) -> Parameters:
    """Check that ``params`` is a name -> numpy array map fedloop can store and ship.

    Parameters
    ----------
    params : Mapping[str, object]
        Candidate parameters.
    field : str, default "parameters"
        Name used in error messages.
    require_finite : bool, default True
        Refuse NaN and infinite values in floating tensors.

    Returns
    -------
    OrderedDict[str, ndarray]
        An ordered copy (the arrays themselves are not copied).

    Raises
    ------
    InvalidInput
        Naming the first offending tensor.
    """
    if not isinstance(params, Mapping):
        raise InvalidInput(
            f"`{field}` must be a mapping of name -> numpy array; got {type(params).__name__}.",
            field=field,
            hint="Pass an OrderedDict such as the one a model adapter returns.",
        )
    out: Parameters = OrderedDict()
    for name, array in params.items():
        where = f"{field}[{name!r}]"
        if not isinstance(name, str) or not name:
            raise InvalidInput(
                f"tensor names in `{field}` must be non-empty strings; got {name!r}.", field=field
            )
        if not isinstance(array, np.ndarray):
            raise InvalidInput(
                f"`{where}` must be a numpy array; got {type(array).__name__}.",
                field=where,
                hint="Convert tensors with .detach().cpu().numpy() first.",
            )
        if array.dtype.name not in DTYPES:
            raise InvalidInput(
                f"`{where}` has unsupported dtype {array.dtype.name}; expected one of "
                f"{', '.join(DTYPES)}.",
                field=where,
            )
        if require_finite and array.dtype.kind == "f" and not np.isfinite(array).all():
            raise InvalidInput(
                f"`{where}` contains NaN or infinite values.",
                field=where,
                hint="Check the training loop for divergence (lower the learning rate).",
            )
        out[name] = array
    return out


def encode_parameters(params: Mapping[str, npt.NDArray[np.generic]]) -> bytes:
    """Serialize parameters to safetensors bytes, keeping their order.

    Parameters
    ----------
    params : Mapping[str, ndarray]
        The tensors; validated with :func:`validate_parameters` (NaN allowed).

    Returns
    -------
    bytes
        A safetensors file image.

    Raises
    ------
    InvalidInput
        When a tensor cannot be serialized.
    """
    checked = validate_parameters(params, require_finite=False)
    arrays = {name: np.require(arr, requirements="C") for name, arr in checked.items()}
    return bytes(_st_save(arrays, metadata={_ORDER_KEY: json.dumps(list(checked))}))


def decode_parameters(data: bytes, *, field: str = "parameters") -> Parameters:
    """Parse safetensors bytes back into ordered parameters.

    Parameters
    ----------
    data : bytes
        What :func:`encode_parameters` produced (or any safetensors file).
    field : str, default "parameters"
        Name used in error messages.

    Returns
    -------
    OrderedDict[str, ndarray]
        Tensors in their original order.

    Raises
    ------
    InvalidInput
        When the bytes are not a valid safetensors image.
    """
    try:
        arrays = _st_load(bytes(data))
    except (SafetensorError, ValueError, TypeError, OverflowError) as err:
        raise InvalidInput(
            f"`{field}` is not a valid safetensors payload: {err}.",
            field=field,
            hint="Send tensors encoded with fedloop.core.encode_parameters.",
        ) from err
    order = _read_order(data) or sorted(arrays)
    if set(order) != set(arrays):
        order = sorted(arrays)
    return OrderedDict((name, arrays[name]) for name in order)


def _read_order(data: bytes) -> list[str] | None:
    """Return the stored tensor order from the safetensors header, if present."""
    try:
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(bytes(data[8 : 8 + header_len]))
        order = json.loads(header.get("__metadata__", {}).get(_ORDER_KEY, "null"))
    except (ValueError, TypeError, AttributeError):
        return None
    if isinstance(order, list) and all(isinstance(n, str) for n in order):
        return order
    return None


def fingerprint_arrays(*arrays: npt.NDArray[np.generic]) -> str:
    """Return a sha256 content fingerprint of arrays (dtype, shape and bytes of each).

    Parameters
    ----------
    *arrays : ndarray
        The data set's arrays, e.g. ``X`` and ``y``.

    Returns
    -------
    str
        64 lowercase hex characters; equal data gives equal fingerprints.
    """
    digest = hashlib.sha256()
    for array in arrays:
        contiguous = np.require(array, requirements="C")
        digest.update(f"{contiguous.dtype.str}|{contiguous.shape}|".encode())
        digest.update(contiguous.reshape(-1).view(np.uint8).data)
    return digest.hexdigest()
