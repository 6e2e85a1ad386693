"""Sealing a pair of Shamir shares for one recipient with ChaCha20-Poly1305."""

from __future__ import annotations

import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from fedloop.core import InvalidInput
from fedloop.federated.secagg.messages import EncryptedShare
from fedloop.federated.secagg.shamir import SHARE_BYTES

__all__ = ["open_share", "seal_share"]

_NONCE_BYTES = 12


def _associated_data(session: str, sender: str, recipient: str) -> bytes:
    """Bind a ciphertext to its round and its two ends (JSON, so ids cannot run together)."""
    return json.dumps([session, sender, recipient]).encode()


def seal_share(
    key: bytes, *, session: str, sender: str, recipient: str, self_mask: bytes, mask_key: bytes
) -> EncryptedShare:
    """Encrypt the share of the self-mask seed and the share of the mask key."""
    nonce = os.urandom(_NONCE_BYTES)
    plaintext = self_mask + mask_key
    ciphertext = ChaCha20Poly1305(key).encrypt(
        nonce, plaintext, _associated_data(session, sender, recipient)
    )
    return EncryptedShare(sender=sender, recipient=recipient, nonce=nonce, ciphertext=ciphertext)


def open_share(key: bytes, share: EncryptedShare, *, session: str) -> tuple[bytes, bytes]:
    """Decrypt a sealed share pair; refuse a forged, replayed or misaddressed one."""
    field = f"share_bundle.shares[{share.sender}]"
    if not isinstance(share.nonce, bytes) or len(share.nonce) != _NONCE_BYTES:
        raise InvalidInput(f"`{field}.nonce` must be {_NONCE_BYTES} bytes.", field=field)
    try:
        plaintext = ChaCha20Poly1305(key).decrypt(
            share.nonce,
            share.ciphertext,
            _associated_data(session, share.sender, share.recipient),
        )
    except (InvalidTag, TypeError, ValueError) as err:
        raise InvalidInput(
            f"`{field}` does not decrypt: it was forged, altered or sealed for another round.",
            field=field,
        ) from err
    if len(plaintext) != 2 * SHARE_BYTES:
        raise InvalidInput(f"`{field}` holds {len(plaintext)} bytes.", field=field)
    return plaintext[:SHARE_BYTES], plaintext[SHARE_BYTES:]
