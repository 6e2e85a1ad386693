"""t-of-n Shamir secret sharing of byte strings over the Mersenne prime field 2^521 - 1."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence

from fedloop.core import InvalidInput

__all__ = ["PRIME", "SHARE_BYTES", "reconstruct_secret", "split_secret"]

PRIME = (1 << 521) - 1
"""The field modulus, a Mersenne prime; secrets up to 65 bytes fit below it."""
SHARE_BYTES = 66
"""Bytes of one share value, big-endian (521 bits round up to 66 bytes)."""
_MAX_SECRET_BYTES = 65


def split_secret(secret: bytes, xs: Sequence[int], *, threshold: int) -> dict[int, bytes]:
    """Split ``secret`` into one share per x-coordinate; any ``threshold`` of them recover it.

    Parameters
    ----------
    secret : bytes
        At most 65 bytes (a 32-byte seed or X25519 key in the protocol).
    xs : sequence of int
        Distinct x-coordinates in [1, PRIME), one per share holder.
    threshold : int
        Shares needed to reconstruct; in [1, len(xs)]. Fewer reveal nothing.

    Returns
    -------
    dict of int to bytes
        The share value at each x, as `SHARE_BYTES` big-endian bytes.

    Raises
    ------
    InvalidInput
        If the secret is too long, an x repeats or is out of range, or the threshold is.
    """
    if not isinstance(secret, bytes) or len(secret) > _MAX_SECRET_BYTES:
        raise InvalidInput(f"`secret` must be at most {_MAX_SECRET_BYTES} bytes.", field="secret")
    _check_xs(xs, field="xs")
    if not isinstance(threshold, int) or not 1 <= threshold <= len(xs):
        raise InvalidInput(
            f"`threshold` must be an int in [1, {len(xs)}]; got {threshold!r}.",
            field="threshold",
            value=threshold,
        )
    coefficients = [int.from_bytes(secret, "big")]
    coefficients += [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    return {x: _evaluate(coefficients, x).to_bytes(SHARE_BYTES, "big") for x in xs}


def reconstruct_secret(shares: Mapping[int, bytes], *, threshold: int, size_bytes: int) -> bytes:
    """Recover a secret from at least ``threshold`` shares by Lagrange interpolation.

    Every share past the first ``threshold`` (in x order) is checked against the
    polynomial they define, so a corrupted or forged share is detected whenever more
    than ``threshold`` shares are given.

    Parameters
    ----------
    shares : mapping of int to bytes
        Share values by x-coordinate, as returned by `split_secret`.
    threshold : int
        The threshold the secret was split with.
    size_bytes : int
        The length of the secret in bytes.

    Returns
    -------
    bytes
        The secret.

    Raises
    ------
    InvalidInput
        If fewer than ``threshold`` shares are given, a share is malformed, the shares
        are inconsistent, or the result does not fit ``size_bytes``.
    """
    if not isinstance(threshold, int) or threshold < 1:
        raise InvalidInput(
            f"`threshold` must be an int >= 1; got {threshold!r}.", field="threshold"
        )
    if len(shares) < threshold:
        raise InvalidInput(
            f"`shares` must hold at least {threshold} shares; got {len(shares)}.",
            field="shares",
            value=len(shares),
            hint="Fewer shares than the threshold reveal nothing about the secret.",
        )
    xs = sorted(shares)
    _check_xs(xs, field="shares")
    points = [(x, _share_value(shares[x], x)) for x in xs]
    basis, extra = points[:threshold], points[threshold:]
    coefficients = _coefficients(basis)
    for x, y in extra:
        if _evaluate(coefficients, x) != y:
            raise InvalidInput(
                f"`shares` are inconsistent: the share at x={x} is not on the polynomial.",
                field=f"shares[{x}]",
                hint="A share was corrupted or forged.",
            )
    value = coefficients[0]
    if value >= 1 << (8 * size_bytes):
        raise InvalidInput(
            f"The reconstructed secret does not fit {size_bytes} bytes.",
            field="shares",
            hint="A share was corrupted or forged.",
        )
    return value.to_bytes(size_bytes, "big")


def _check_xs(xs: Sequence[int], *, field: str) -> None:
    """Refuse x-coordinates that repeat or lie outside [1, PRIME)."""
    if len(set(xs)) != len(xs):
        raise InvalidInput(f"`{field}` x-coordinates must be distinct.", field=field)
    for x in xs:
        if not isinstance(x, int) or not 1 <= x < PRIME:
            raise InvalidInput(
                f"`{field}` x-coordinates must be ints in [1, 2**521 - 1); got {x!r}.",
                field=field,
                value=x,
            )


def _share_value(data: bytes, x: int) -> int:
    """Decode one share value, refusing wrong lengths and values outside the field."""
    if not isinstance(data, bytes) or len(data) != SHARE_BYTES:
        raise InvalidInput(f"`shares[{x}]` must be {SHARE_BYTES} bytes.", field=f"shares[{x}]")
    value = int.from_bytes(data, "big")
    if value >= PRIME:
        raise InvalidInput(f"`shares[{x}]` is not a field element.", field=f"shares[{x}]")
    return value


def _evaluate(coefficients: Sequence[int], x: int) -> int:
    """Evaluate a polynomial (constant term first) at ``x`` mod PRIME (Horner)."""
    result = 0
    for coefficient in reversed(coefficients):
        result = (result * x + coefficient) % PRIME
    return result


def _coefficients(points: Sequence[tuple[int, int]]) -> list[int]:
    """Return the coefficients (constant term first) of the polynomial through ``points``.

    Lagrange interpolation in coefficient form, O(t^2) multiplications and one modular
    inverse (Montgomery's batch inversion): the master polynomial ``prod (x - x_j)`` is
    divided by each ``(x - x_i)`` and the quotient weighted by ``y_i / prod_{j!=i} (x_i - x_j)``.
    Checking further shares is then a Horner evaluation each.
    """
    master = [1]  # constant term first
    for xj, _ in points:
        shifted = [0, *master]
        for k, c in enumerate(master):
            shifted[k] = (shifted[k] - xj * c) % PRIME
        master = shifted
    quotients: list[list[int]] = []
    denominators: list[int] = []
    for xi, _ in points:
        # Synthetic division of master by (x - xi), highest power first.
        quotient = [0] * (len(master) - 1)
        carry = 0
        for k in range(len(master) - 1, 0, -1):
            carry = (master[k] + carry * xi) % PRIME
            quotient[k - 1] = carry
        quotients.append(quotient)
        denominators.append(_evaluate(quotient, xi))
    inverses = _batch_inverse(denominators)
    total = [0] * len(points)
    for (_, yi), quotient, inverse in zip(points, quotients, inverses, strict=True):
        weight = yi * inverse % PRIME
        for k, c in enumerate(quotient):
            total[k] = (total[k] + weight * c) % PRIME
    return total


def _batch_inverse(values: Sequence[int]) -> list[int]:
    """Return every value's inverse mod PRIME with a single modular exponentiation."""
    prefix = [1]
    for v in values:
        prefix.append(prefix[-1] * v % PRIME)
    inverse = pow(prefix[-1], -1, PRIME)
    out = [0] * len(values)
    for i in range(len(values) - 1, -1, -1):
        out[i] = inverse * prefix[i] % PRIME
        inverse = inverse * values[i] % PRIME
    return out
