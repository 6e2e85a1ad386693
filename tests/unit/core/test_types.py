"""Plain shared types: ids, dtypes, tensor specs and signatures."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from fedloop.core import DTYPES, Signature, TensorSpec, new_id


def test_new_id_is_32_lowercase_hex() -> None:
    """new_id returns 32 lowercase hex characters."""
    # Act
    value = new_id()

    # Assert
    assert len(value) == 32
    assert set(value) <= set("0123456789abcdef")


def test_new_ids_are_unique() -> None:
    """A thousand new ids are all different."""
    # Act
    ids = {new_id() for _ in range(1000)}

    # Assert
    assert len(ids) == 1000


@pytest.mark.parametrize("name", [pytest.param(d, id=d) for d in DTYPES])
def test_dtype_names_are_numpy_names(name: str) -> None:
    """Every allowed dtype name is numpy's own spelling."""
    # Act / Assert
    assert np.dtype(name).name == name


def test_tensor_spec_normalizes_free_dimensions() -> None:
    """-1 and None both mark a free dimension, stored as None."""
    # Act
    spec = TensorSpec(name="x", dtype="float32", shape=(-1, None, 4))

    # Assert
    assert spec.shape == (None, None, 4)


@pytest.mark.parametrize(
    ("kwargs", "loc"),
    [
        pytest.param({"name": "x", "dtype": "float32", "shape": (-2,)}, "shape", id="negative-dim"),
        pytest.param({"name": "x", "dtype": "complex64", "shape": (1,)}, "dtype", id="bad-dtype"),
        pytest.param({"name": "", "dtype": "float32", "shape": (1,)}, "name", id="empty-name"),
        pytest.param(
            {"name": "x", "dtype": "float32", "shape": (1,), "unit": "m"}, "unit", id="extra-key"
        ),
    ],
)
def test_tensor_spec_refuses_bad_fields(kwargs: dict[str, object], loc: str) -> None:
    """A bad dimension, dtype, name or unknown key fails validation at that field."""
    # Act / Assert
    with pytest.raises(ValidationError) as info:
        TensorSpec(**kwargs)  # type: ignore[arg-type]
    assert info.value.errors()[0]["loc"][0] == loc


def test_tensor_spec_is_frozen() -> None:
    """A tensor spec cannot be changed after creation."""
    # Arrange
    spec = TensorSpec(name="x", dtype="float32", shape=(1,))

    # Act / Assert
    with pytest.raises(ValidationError, match=r"frozen"):
        spec.name = "y"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("inputs", "outputs", "loc"),
    [
        pytest.param((), (TensorSpec(name="y", dtype="int64", shape=(1,)),), "inputs", id="no-in"),
        pytest.param(
            (TensorSpec(name="x", dtype="int64", shape=(1,)),), (), "outputs", id="no-out"
        ),
    ],
)
def test_signature_needs_inputs_and_outputs(
    inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...], loc: str
) -> None:
    """A signature needs at least one input and one output."""
    # Act / Assert
    with pytest.raises(ValidationError) as info:
        Signature(inputs=inputs, outputs=outputs)
    assert info.value.errors()[0]["loc"][0] == loc


def test_signature_round_trips_through_json() -> None:
    """A signature dumped to JSON validates back to an equal signature."""
    # Arrange
    signature = Signature(
        inputs=(TensorSpec(name="x", dtype="float32", shape=(-1, 4)),),
        outputs=(TensorSpec(name="y", dtype="float32", shape=(-1,)),),
    )

    # Act
    loaded = Signature.model_validate_json(signature.model_dump_json())

    # Assert
    assert loaded == signature
