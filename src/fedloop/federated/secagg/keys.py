"""X25519 key pairs and HKDF-SHA256 derivation of pairwise mask seeds and share keys."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedloop.core import InvalidInput

__all__ = [
    "KEY_BYTES",
    "MASK_SEED_INFO",
    "SHARE_KEY_INFO",
    "derive_shared_key",
    "generate_private_key",
    "load_private_key",
    "load_public_key",
    "private_bytes",
    "public_bytes",
]

KEY_BYTES = 32
"""Length of a raw X25519 public or private key."""
MASK_SEED_INFO = b"fedloop/secagg/v1/pairwise-mask"
"""HKDF ``info`` for the seed of the pairwise mask of two clients."""
SHARE_KEY_INFO = b"fedloop/secagg/v1/share-key"
"""HKDF ``info`` for the ChaCha20-Poly1305 key that encrypts shares between two clients."""


def generate_private_key() -> X25519PrivateKey:
    """Return a fresh X25519 private key.

    Returns
    -------
    X25519PrivateKey
    """
    return X25519PrivateKey.generate()


def public_bytes(key: X25519PrivateKey) -> bytes:
    """Return the raw 32-byte public key of ``key``.

    Parameters
    ----------
    key : X25519PrivateKey

    Returns
    -------
    bytes
    """
    return key.public_key().public_bytes(
        encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw
    )


def private_bytes(key: X25519PrivateKey) -> bytes:
    """Return the raw 32-byte private key (to be Shamir-shared, never sent in clear).

    Parameters
    ----------
    key : X25519PrivateKey

    Returns
    -------
    bytes
    """
    return key.private_bytes(
        encoding=serialization.Encoding.Raw,
        format=serialization.PrivateFormat.Raw,
        encryption_algorithm=serialization.NoEncryption(),
    )


def load_public_key(data: bytes, *, field: str) -> X25519PublicKey:
    """Parse a raw 32-byte X25519 public key.

    Parameters
    ----------
    data : bytes
        The raw key.
    field : str
        The name to report in errors.

    Returns
    -------
    X25519PublicKey

    Raises
    ------
    InvalidInput
        If ``data`` is not 32 bytes.
    """
    if not isinstance(data, bytes) or len(data) != KEY_BYTES:
        raise InvalidInput(f"`{field}` must be a raw {KEY_BYTES}-byte X25519 key.", field=field)
    return X25519PublicKey.from_public_bytes(data)


def load_private_key(data: bytes, *, field: str) -> X25519PrivateKey:
    """Parse a raw 32-byte X25519 private key.

    Parameters
    ----------
    data : bytes
        The raw key.
    field : str
        The name to report in errors.

    Returns
    -------
    X25519PrivateKey

    Raises
    ------
    InvalidInput
        If ``data`` is not 32 bytes.
    """
    if not isinstance(data, bytes) or len(data) != KEY_BYTES:
        raise InvalidInput(f"`{field}` must be a raw {KEY_BYTES}-byte X25519 key.", field=field)
    return X25519PrivateKey.from_private_bytes(data)


def derive_shared_key(
    private: X25519PrivateKey, peer: X25519PublicKey, *, info: bytes, salt: bytes
) -> bytes:
    """Agree on a 32-byte key with ``peer``: HKDF-SHA256 over the X25519 shared secret.

    Both sides get the same key; ``info`` separates purposes and ``salt`` (the session)
    separates rounds.

    Parameters
    ----------
    private : X25519PrivateKey
        Our key.
    peer : X25519PublicKey
        Their key.
    info : bytes
        `MASK_SEED_INFO` or `SHARE_KEY_INFO`.
    salt : bytes
        The session identifier.

    Returns
    -------
    bytes
        32 bytes.

    Raises
    ------
    InvalidInput
        If the peer key is a low-order point (the shared secret is all zeros).
    """
    try:
        shared = private.exchange(peer)
    except ValueError as err:
        raise InvalidInput(
            "A peer public key is a low-order X25519 point.", field="public_key"
        ) from err
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(shared)
