"""The messages of the secure-aggregation rounds: frozen dataclasses of str, int, bytes and arrays."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from fedloop.core import InvalidInput
from fedloop.federated.secagg.fixedpoint import FixedPointCodec

__all__ = [
    "AdvertiseKeys",
    "AggregateResult",
    "EncryptedShare",
    "MaskedInput",
    "Roster",
    "SecAggConfig",
    "ShareBundle",
    "ShareKeys",
    "UnmaskRequest",
    "UnmaskResponse",
]


@dataclass(frozen=True)
class SecAggConfig:
    """The public parameters of one secure-aggregation round, chosen by the server.

    Parameters
    ----------
    threshold : int
        Shares needed to reconstruct a seed or key, and the fewest clients whose inputs
        may be summed; >= 2. More than half the clients (``n // 2 + 1``) is customary.
    vector_length : int
        Length of every client's input vector; >= 1.
    codec : FixedPointCodec, default FixedPointCodec()
        How floats map into the ring.
    neighbours : int or None, default None
        SecAgg+: each client masks with, and shares its secrets among, only this many
        neighbours on a random ring graph (an even number >= 2). None masks every pair
        (the original protocol).

    Raises
    ------
    InvalidInput
        If a parameter is out of range.
    """

    threshold: int
    vector_length: int
    codec: FixedPointCodec = field(default_factory=FixedPointCodec)
    neighbours: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.threshold, int) or self.threshold < 2:
            raise InvalidInput(
                f"`secagg.threshold` must be an int >= 2; got {self.threshold!r}.",
                field="secagg.threshold",
                value=self.threshold,
                hint="Use n // 2 + 1 for n clients.",
            )
        if not isinstance(self.vector_length, int) or self.vector_length < 1:
            raise InvalidInput(
                f"`secagg.vector_length` must be an int >= 1; got {self.vector_length!r}.",
                field="secagg.vector_length",
                value=self.vector_length,
            )
        if self.neighbours is not None and (
            not isinstance(self.neighbours, int)
            or self.neighbours < 2
            or self.neighbours % 2
            or self.neighbours + 1 < self.threshold
        ):
            raise InvalidInput(
                f"`secagg.neighbours` must be an even int >= 2 and >= threshold - 1; "
                f"got {self.neighbours!r}.",
                field="secagg.neighbours",
                value=self.neighbours,
                hint="Leave it unset to mask every pair of clients.",
            )


@dataclass(frozen=True)
class AdvertiseKeys:
    """Round 0, client to server: a client's two fresh X25519 public keys.

    Parameters
    ----------
    client_id : str
        The sender.
    cipher_public_key : bytes
        Raw 32-byte key for encrypting shares between clients.
    mask_public_key : bytes
        Raw 32-byte key for agreeing on pairwise mask seeds.
    """

    client_id: str
    cipher_public_key: bytes
    mask_public_key: bytes


@dataclass(frozen=True)
class Roster:
    """Round 0, server to every client: the parameters and the keys of every member.

    Parameters
    ----------
    session : str
        Unique per round; salts every derived key.
    config : SecAggConfig
        The round's parameters.
    members : tuple of AdvertiseKeys
        Every client that advertised, sorted by id; position + 1 is its Shamir x.
    graph_seed : bytes
        Public seed of the SecAgg+ neighbour graph (unused without ``neighbours``).
    """

    session: str
    config: SecAggConfig
    members: tuple[AdvertiseKeys, ...]
    graph_seed: bytes


@dataclass(frozen=True)
class EncryptedShare:
    """One client's shares of its self-mask seed and mask key, sealed for one recipient.

    Parameters
    ----------
    sender : str
        The owner of the shared secrets.
    recipient : str
        The client that can open it.
    nonce : bytes
        12-byte ChaCha20-Poly1305 nonce.
    ciphertext : bytes
        The sealed share pair; the session, sender and recipient are authenticated.
    """

    sender: str
    recipient: str
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True)
class ShareKeys:
    """Round 1, client to server: one sealed share per other share holder.

    Parameters
    ----------
    client_id : str
        The sender.
    shares : tuple of EncryptedShare
        One per neighbour (every other member without SecAgg+).
    """

    client_id: str
    shares: tuple[EncryptedShare, ...]


@dataclass(frozen=True)
class ShareBundle:
    """Round 1, server to one client: the sealed shares addressed to it.

    Parameters
    ----------
    recipient : str
        The client this bundle is for.
    shares : tuple of EncryptedShare
        One per member that completed round 1 and holds the recipient as a neighbour.
    """

    recipient: str
    shares: tuple[EncryptedShare, ...]


@dataclass(frozen=True)
class MaskedInput:
    """Round 2, client to server: the encoded input plus self and pairwise masks.

    Parameters
    ----------
    client_id : str
        The sender.
    vector : numpy.ndarray of uint64
        ``vector_length`` residues mod ``2**codec.bits``.
    """

    client_id: str
    vector: NDArray[np.uint64]


@dataclass(frozen=True)
class UnmaskRequest:
    """Round 3, server to the survivors: whose masks to remove.

    Parameters
    ----------
    survivors : tuple of str
        Clients whose masked input arrived; their self-mask seeds are reconstructed.
    dropped : tuple of str
        Clients that shared keys but sent no input; their mask keys are reconstructed.
    """

    survivors: tuple[str, ...]
    dropped: tuple[str, ...]


@dataclass(frozen=True)
class UnmaskResponse:
    """Round 3, client to server: the opened shares the request asked for.

    Parameters
    ----------
    client_id : str
        The sender.
    self_mask_shares : mapping of str to bytes
        Shares of each survivor's self-mask seed, by owner.
    key_shares : mapping of str to bytes
        Shares of each dropped client's mask private key, by owner.
    """

    client_id: str
    self_mask_shares: Mapping[str, bytes]
    key_shares: Mapping[str, bytes]


@dataclass(frozen=True)
class AggregateResult:
    """The server's output: the exact sum of the survivors' quantised inputs.

    Parameters
    ----------
    total : numpy.ndarray of float64
        Sum of the survivors' inputs (each clipped and quantised by the codec).
    survivors : tuple of str
        Whose inputs are in the sum.
    dropped : tuple of str
        Who shared keys but whose inputs are not in the sum.
    """

    total: NDArray[np.float64]
    survivors: tuple[str, ...]
    dropped: tuple[str, ...]
