"""Secure aggregation (Bonawitz et al. 2017, SecAgg+): the server learns only the sum of inputs."""

from fedloop.federated.secagg.client import SecAggClient
from fedloop.federated.secagg.fixedpoint import FixedPointCodec
from fedloop.federated.secagg.messages import (
    AdvertiseKeys,
    AggregateResult,
    EncryptedShare,
    MaskedInput,
    Roster,
    SecAggConfig,
    ShareBundle,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
)
from fedloop.federated.secagg.server import SecAggServer

__all__ = [
    "AdvertiseKeys",
    "AggregateResult",
    "EncryptedShare",
    "FixedPointCodec",
    "MaskedInput",
    "Roster",
    "SecAggClient",
    "SecAggConfig",
    "SecAggServer",
    "ShareBundle",
    "ShareKeys",
    "UnmaskRequest",
    "UnmaskResponse",
]
