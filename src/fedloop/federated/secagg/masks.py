"""Expansion of a 32-byte seed into a uniform mask vector mod 2^k (ChaCha20 keystream)."""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from numpy.typing import NDArray

from fedloop.core import InvalidInput

__all__ = ["SEED_BYTES", "expand_seed"]

SEED_BYTES = 32
"""Length of a mask seed (a ChaCha20 key)."""
_NONCE = bytes(16)  # each seed is fresh per round and purpose, so a fixed nonce is safe


def expand_seed(seed: bytes, length: int, *, bits: int) -> NDArray[np.uint64]:
    """Expand ``seed`` into ``length`` independent uniform residues mod ``2**bits``.

    The ChaCha20 keystream under ``seed`` is read as little-endian ``uint64`` words and
    reduced mod ``2**bits``; since ``2**bits`` divides ``2**64`` each residue is uniform.
    A seed must mask one vector only: the protocol derives a fresh one per round.

    Parameters
    ----------
    seed : bytes
        `SEED_BYTES` bytes.
    length : int
        Number of residues, >= 0.
    bits : int
        Ring size, in [1, 64].

    Returns
    -------
    numpy.ndarray of uint64

    Raises
    ------
    InvalidInput
        If the seed is not 32 bytes or ``length``/``bits`` is out of range.
    """
    if not isinstance(seed, bytes) or len(seed) != SEED_BYTES:
        raise InvalidInput(f"`seed` must be {SEED_BYTES} bytes.", field="seed")
    if not isinstance(length, int) or length < 0:
        raise InvalidInput(f"`length` must be an int >= 0; got {length!r}.", field="length")
    if not isinstance(bits, int) or not 1 <= bits <= 64:
        raise InvalidInput(f"`bits` must be an int in [1, 64]; got {bits!r}.", field="bits")
    encryptor = Cipher(algorithms.ChaCha20(seed, _NONCE), mode=None).encryptor()
    stream = encryptor.update(bytes(8 * length))
    words = np.frombuffer(stream, dtype="<u8").astype(np.uint64)
    return words & np.uint64((1 << bits) - 1)
