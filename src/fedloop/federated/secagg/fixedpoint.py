"""Fixed-point encoding of float arrays into the ring of integers mod 2^k."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fedloop.core import InvalidInput

__all__ = ["FixedPointCodec"]


@dataclass(frozen=True)
class FixedPointCodec:
    """Encode floats as ``round(clip(x) * scale) mod 2**bits`` and decode sums exactly.

    Values are clipped to ``[-clip, clip]``, scaled, rounded to the nearest integer and
    stored as ``uint64`` residues mod ``2**bits``. A sum of ``n`` encodings decodes
    exactly (to the sum of the quantised values) as long as it cannot wrap around, that is
    ``n * round(clip * scale) < 2**(bits - 1)``; `max_summands` gives the largest such ``n``.

    Parameters
    ----------
    bits : int, default 64
        The ring size ``k``; residues lie in ``[0, 2**bits)``. Must be in [8, 64].
    scale : float, default 2**24
        Multiplier before rounding; the quantisation step is ``1 / scale``.
    clip : float, default 1024.0
        Values are clipped to ``[-clip, clip]`` before encoding.

    Raises
    ------
    InvalidInput
        If a parameter is out of range, or not even one value fits the ring.

    Examples
    --------
    >>> codec = FixedPointCodec(bits=32, scale=2.0**10, clip=8.0)
    >>> total = codec.add(codec.encode([0.5, -1.0]), codec.encode([0.25, 2.0]))
    >>> codec.decode_sum(total, num_summands=2).tolist()
    [0.75, 1.0]
    """

    bits: int = 64
    scale: float = 2.0**24
    clip: float = 1024.0

    def __post_init__(self) -> None:
        if not isinstance(self.bits, int) or not 8 <= self.bits <= 64:
            raise InvalidInput(
                f"`codec.bits` must be an int in [8, 64]; got {self.bits!r}.",
                field="codec.bits",
                value=self.bits,
                hint="Use 32 or 64.",
            )
        for name in ("scale", "clip"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not np.isfinite(value) or value <= 0:
                raise InvalidInput(
                    f"`codec.{name}` must be a finite float > 0; got {value!r}.",
                    field=f"codec.{name}",
                    value=value,
                )
        if self.max_summands < 1:
            raise InvalidInput(
                f"`codec.clip * codec.scale` = {self.clip * self.scale} does not fit a "
                f"{self.bits}-bit ring.",
                field="codec.scale",
                value=self.scale,
                hint="Lower `scale` or `clip`, or raise `bits`.",
            )

    @property
    def modulus_mask(self) -> int:
        """The bit mask ``2**bits - 1`` that reduces a ``uint64`` mod ``2**bits``."""
        return (1 << self.bits) - 1

    @property
    def max_summands(self) -> int:
        """The largest number of encodings whose sum decodes without wrapping around."""
        step_max = int(np.rint(self.clip * self.scale))
        return ((1 << (self.bits - 1)) - 1) // max(step_max, 1)

    def encode(self, values: ArrayLike) -> NDArray[np.uint64]:
        """Encode a float array into residues mod ``2**bits``.

        Parameters
        ----------
        values : array_like of float
            Any shape; flattened into one vector.

        Returns
        -------
        numpy.ndarray of uint64
            One residue per value.

        Raises
        ------
        InvalidInput
            If a value is NaN or infinite.
        """
        array = np.asarray(values, dtype=np.float64).ravel()
        if not np.all(np.isfinite(array)):
            raise InvalidInput(
                "`values` must be finite; got NaN or infinity.",
                field="values",
                hint="Check the update for divergence before secure aggregation.",
            )
        integers = np.rint(np.clip(array, -self.clip, self.clip) * self.scale).astype(np.int64)
        return integers.view(np.uint64) & np.uint64(self.modulus_mask)

    def decode_sum(self, residues: ArrayLike, *, num_summands: int) -> NDArray[np.float64]:
        """Decode the ring sum of ``num_summands`` encodings back to floats.

        Parameters
        ----------
        residues : array_like of uint64
            The sum mod ``2**bits``.
        num_summands : int
            How many encodings were added; must be in [1, `max_summands`].

        Returns
        -------
        numpy.ndarray of float64
            The sum of the quantised inputs.

        Raises
        ------
        InvalidInput
            If ``num_summands`` could overflow the ring or a residue is out of range.
        """
        if not isinstance(num_summands, int) or not 1 <= num_summands <= self.max_summands:
            raise InvalidInput(
                f"`num_summands` must be an int in [1, {self.max_summands}]; got {num_summands!r}.",
                field="num_summands",
                value=num_summands,
                hint="Lower `codec.scale` or `codec.clip`, or raise `codec.bits`.",
            )
        array = self.validate(residues, field="residues")
        # Sign-extend bit k-1: shift it to the top, reinterpret as int64, shift back.
        shift = np.uint64(64 - self.bits)
        signed = (array << shift).view(np.int64) >> np.int64(64 - self.bits)
        return signed.astype(np.float64) / self.scale

    def validate(self, residues: ArrayLike, *, field: str) -> NDArray[np.uint64]:
        """Return ``residues`` as a 1-D ``uint64`` vector, refusing values outside the ring.

        Parameters
        ----------
        residues : array_like of unsigned int
            The vector to check.
        field : str
            The name to report in errors.

        Returns
        -------
        numpy.ndarray of uint64

        Raises
        ------
        InvalidInput
            If the array is not 1-D unsigned integers below ``2**bits``.
        """
        array = np.asarray(residues)
        if array.ndim != 1 or array.dtype.kind != "u":
            raise InvalidInput(
                f"`{field}` must be a 1-D unsigned integer array; got {array.dtype} "
                f"with shape {array.shape}.",
                field=field,
            )
        array = array.astype(np.uint64, copy=False)
        if self.bits < 64 and array.size and int(array.max()) > self.modulus_mask:
            raise InvalidInput(
                f"`{field}` holds values >= 2**{self.bits}.", field=field, value=int(array.max())
            )
        return array

    def add(self, left: NDArray[np.uint64], right: NDArray[np.uint64]) -> NDArray[np.uint64]:
        """Return ``(left + right) mod 2**bits``.

        Parameters
        ----------
        left, right : numpy.ndarray of uint64
            Residues of the same shape.

        Returns
        -------
        numpy.ndarray of uint64
        """
        return (left + right) & np.uint64(self.modulus_mask)

    def sub(self, left: NDArray[np.uint64], right: NDArray[np.uint64]) -> NDArray[np.uint64]:
        """Return ``(left - right) mod 2**bits``.

        Parameters
        ----------
        left, right : numpy.ndarray of uint64
            Residues of the same shape.

        Returns
        -------
        numpy.ndarray of uint64
        """
        return (left - right) & np.uint64(self.modulus_mask)
