"""The tensor codec: safetensors round trips, validation and content fingerprints."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedloop.core import (
    DTYPES,
    InvalidInput,
    decode_parameters,
    encode_parameters,
    fingerprint_arrays,
    validate_parameters,
)

shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)


@st.composite
def arrays(draw: st.DrawFn) -> npt.NDArray[np.generic]:
    """Draw an array of any supported dtype and shape (0-d and empty included)."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    return draw(hnp.arrays(dtype=dtype, shape=shapes))


tensor_names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20
)
parameters = st.dictionaries(tensor_names, arrays(), max_size=6).map(
    lambda d: OrderedDict(d.items())
)


def _same(left: npt.NDArray[np.generic], right: npt.NDArray[np.generic]) -> bool:
    return (
        left.dtype == right.dtype
        and left.shape == right.shape
        and left.tobytes() == right.tobytes()
    )


@given(params=parameters)
def test_round_trip_keeps_names_order_dtypes_shapes_and_bytes(
    params: OrderedDict[str, npt.NDArray[np.generic]],
) -> None:
    """decode(encode(p)) returns the same tensors in the same order, bit for bit."""
    # Act
    decoded = decode_parameters(encode_parameters(params))

    # Assert
    assert list(decoded) == list(params)
    assert all(_same(decoded[name], params[name]) for name in params)


@pytest.mark.parametrize("dtype", [pytest.param(d, id=d) for d in DTYPES])
def test_round_trip_keeps_zero_dim_array(dtype: str) -> None:
    """A 0-d array comes back 0-d."""
    # Arrange
    params = OrderedDict(scalar=np.array(1, dtype=dtype))

    # Act
    decoded = decode_parameters(encode_parameters(params))

    # Assert
    assert decoded["scalar"].shape == ()
    assert decoded["scalar"].dtype == np.dtype(dtype)


def test_round_trip_keeps_non_sorted_order() -> None:
    """Tensor order is kept even when it is not alphabetical."""
    # Arrange
    params = OrderedDict((name, np.zeros(2, dtype="float32")) for name in ["z", "a", "m.w", "b"])

    # Act
    decoded = decode_parameters(encode_parameters(params))

    # Assert
    assert list(decoded) == ["z", "a", "m.w", "b"]


def test_round_trip_of_non_contiguous_array() -> None:
    """A transposed (Fortran-ordered) array round-trips by value."""
    # Arrange
    array = np.arange(6, dtype="int32").reshape(2, 3).T

    # Act
    decoded = decode_parameters(encode_parameters({"w": array}))

    # Assert
    np.testing.assert_array_equal(decoded["w"], array)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not safetensors", id="text"),
        pytest.param(b"\xff" * 8, id="huge-header-length"),
        pytest.param((10).to_bytes(8, "little") + b"{}", id="header-past-end"),
        pytest.param((10).to_bytes(8, "little") + b"[1, 2, 3]!", id="header-not-object"),
        pytest.param(b"\x00" * 100, id="zeros"),
    ],
)
def test_decode_refuses_garbage(data: bytes) -> None:
    """Bytes that are not a safetensors image raise InvalidInput naming the field."""
    # Act / Assert
    with pytest.raises(InvalidInput, match=r"not a valid safetensors payload") as info:
        decode_parameters(data, field="update")
    assert info.value.field == "update"


@given(data=st.binary(max_size=200))
def test_decode_random_bytes_raises_only_invalid_input(data: bytes) -> None:
    """Random bytes either decode to parameters or raise InvalidInput, never another error."""
    # Act
    try:
        decoded = decode_parameters(data)
    except InvalidInput:
        return

    # Assert
    assert isinstance(decoded, OrderedDict)


def test_decode_truncated_payload_raises_invalid_input() -> None:
    """A payload cut short raises InvalidInput."""
    # Arrange
    data = encode_parameters({"w": np.arange(100, dtype="float64")})

    # Act / Assert
    with pytest.raises(InvalidInput):
        decode_parameters(data[: len(data) // 2])


@pytest.mark.parametrize("bad", [pytest.param(np.nan, id="nan"), pytest.param(np.inf, id="inf")])
def test_validate_refuses_non_finite(bad: float) -> None:
    """validate_parameters refuses NaN and infinity, naming the tensor."""
    # Arrange
    params = {"ok": np.zeros(2), "w": np.array([1.0, bad], dtype="float32")}

    # Act / Assert
    with pytest.raises(InvalidInput, match=r"NaN or infinite") as info:
        validate_parameters(params)
    assert info.value.field == "parameters['w']"


def test_validate_allows_non_finite_when_asked() -> None:
    """require_finite=False lets NaN through."""
    # Act
    checked = validate_parameters({"w": np.array([np.nan])}, require_finite=False)

    # Assert
    assert list(checked) == ["w"]


def test_encode_allows_nan() -> None:
    """encode_parameters stores NaN (only validation refuses it)."""
    # Arrange
    params = {"w": np.array([np.nan, 1.0], dtype="float16")}

    # Act
    decoded = decode_parameters(encode_parameters(params))

    # Assert
    assert np.isnan(decoded["w"][0])
    assert decoded["w"][1] == 1.0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        pytest.param([np.zeros(1)], "parameters", id="not-a-mapping"),
        pytest.param({"w": [1.0, 2.0]}, "parameters['w']", id="list-not-array"),
        pytest.param({"w": np.zeros(1, dtype="complex64")}, "parameters['w']", id="complex"),
        pytest.param({"w": np.array(["a"])}, "parameters['w']", id="strings"),
        pytest.param({"": np.zeros(1)}, "parameters", id="empty-name"),
        pytest.param({1: np.zeros(1)}, "parameters", id="int-name"),
    ],
)
def test_validate_refuses_malformed_parameters(params: object, field: str) -> None:
    """Non-mappings, non-arrays, unsupported dtypes and bad names raise InvalidInput."""
    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        validate_parameters(params)  # type: ignore[arg-type]
    assert info.value.field == field


def test_validate_uses_given_field_name() -> None:
    """The field argument prefixes the offending tensor's name."""
    # Act / Assert
    with pytest.raises(InvalidInput, match=r"update\['w'\]") as info:
        validate_parameters({"w": np.array([np.inf])}, field="update")
    assert info.value.field == "update['w']"


def test_encode_refuses_unsupported_dtype() -> None:
    """encode_parameters validates dtypes too."""
    # Act / Assert
    with pytest.raises(InvalidInput, match=r"unsupported dtype") as info:
        encode_parameters({"w": np.zeros(2, dtype="complex128")})
    assert info.value.field == "parameters['w']"


@given(array=arrays())
def test_fingerprint_is_stable(array: npt.NDArray[np.generic]) -> None:
    """Equal arrays (even as separate copies) have equal fingerprints."""
    # Act
    first = fingerprint_arrays(array)
    second = fingerprint_arrays(array.copy())

    # Assert
    assert first == second
    assert len(first) == 64
    assert set(first) <= set("0123456789abcdef")


def test_fingerprint_is_sensitive_to_content() -> None:
    """Changing one value changes the fingerprint."""
    # Arrange
    array = np.arange(10, dtype="float32")
    changed = array.copy()
    changed[3] = 3.5

    # Act / Assert
    assert fingerprint_arrays(array) != fingerprint_arrays(changed)


def test_fingerprint_is_sensitive_to_dtype() -> None:
    """The same values in another dtype have another fingerprint."""
    # Act / Assert
    assert fingerprint_arrays(np.zeros(4, dtype="int32")) != fingerprint_arrays(
        np.zeros(4, dtype="float32")
    )


@pytest.mark.parametrize(
    ("left", "right"),
    [
        pytest.param((2, 3), (3, 2), id="transposed-shape"),
        pytest.param((6,), (2, 3), id="flat-vs-matrix"),
        pytest.param((), (1,), id="scalar-vs-vector"),
        pytest.param((0,), (0, 0), id="empty-shapes"),
    ],
)
def test_fingerprint_is_sensitive_to_shape(left: tuple[int, ...], right: tuple[int, ...]) -> None:
    """The same bytes in another shape have another fingerprint."""
    # Arrange
    a = np.ones(left, dtype="int8")
    b = np.ones(right, dtype="int8")

    # Act / Assert
    assert fingerprint_arrays(a) != fingerprint_arrays(b)


def test_fingerprint_is_sensitive_to_array_boundaries() -> None:
    """Splitting the same values differently across arrays changes the fingerprint."""
    # Arrange
    values = np.arange(4, dtype="int64")

    # Act / Assert
    assert fingerprint_arrays(values[:1], values[1:]) != fingerprint_arrays(values[:2], values[2:])


def test_fingerprint_ignores_memory_layout() -> None:
    """A C-ordered and a Fortran-ordered copy of one array have one fingerprint."""
    # Arrange
    array = np.arange(12, dtype="float64").reshape(3, 4)

    # Act / Assert
    assert fingerprint_arrays(array) == fingerprint_arrays(np.asfortranarray(array))
