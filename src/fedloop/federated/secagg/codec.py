"""Secure-aggregation messages as JSON values (server to client) and tensors (client to server).

A round of secure aggregation runs over the ordinary fit exchange of every transport: the
coordinator's messages travel in a task's JSON settings and a client's answers travel as
safetensors tensors (the JSON text as ``uint8`` under :data:`MESSAGE_KEY`, a masked input as
``uint64`` under :data:`MASKED_KEY`). Bytes are base64 in JSON. Nothing is pickled, and every
decoder checks types and sizes, naming the offending field.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np

from fedloop.core import InvalidInput, Parameters
from fedloop.federated.secagg.fixedpoint import FixedPointCodec
from fedloop.federated.secagg.messages import (
    AdvertiseKeys,
    EncryptedShare,
    MaskedInput,
    Roster,
    SecAggConfig,
    ShareBundle,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
)

__all__ = [
    "MASKED_KEY",
    "MESSAGE_KEY",
    "advertise_from_json",
    "advertise_to_json",
    "bundle_from_json",
    "bundle_to_json",
    "json_from_tensors",
    "json_to_tensors",
    "masked_from_tensors",
    "masked_to_tensors",
    "request_from_json",
    "request_to_json",
    "roster_from_json",
    "roster_to_json",
    "share_keys_from_json",
    "share_keys_to_json",
    "unmask_from_json",
    "unmask_to_json",
]

#: Tensor name of a JSON message sent by a client.
MESSAGE_KEY = "secagg.message"
#: Tensor name of a client's masked input.
MASKED_KEY = "secagg.masked"

_MAX_ID_CHARS = 256


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: Any, *, field: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidInput(f"`{field}` must be base64 text.", field=field)
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as err:
        raise InvalidInput(f"`{field}` is not valid base64: {err}.", field=field) from err


def _obj(value: Any, *, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"`{field}` must be a JSON object.", field=field)
    return value


def _text(value: Any, *, field: str) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_ID_CHARS:
        raise InvalidInput(f"`{field}` must be a non-empty string.", field=field)
    return value


def _int(value: Any, *, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"`{field}` must be an integer; got {value!r}.", field=field)
    return value


def _list(value: Any, *, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidInput(f"`{field}` must be a JSON array.", field=field)
    return value


# -- server to client ------------------------------------------------------------------------
def advertise_to_json(message: AdvertiseKeys) -> dict[str, Any]:
    """Return an :class:`AdvertiseKeys` as a JSON object."""
    return {
        "client_id": message.client_id,
        "cipher_public_key": _b64(message.cipher_public_key),
        "mask_public_key": _b64(message.mask_public_key),
    }


def advertise_from_json(value: Any, *, field: str = "advertise") -> AdvertiseKeys:
    """Decode :func:`advertise_to_json`'s output (key lengths are checked by the receiver)."""
    obj = _obj(value, field=field)
    return AdvertiseKeys(
        _text(obj.get("client_id"), field=f"{field}.client_id"),
        _unb64(obj.get("cipher_public_key"), field=f"{field}.cipher_public_key"),
        _unb64(obj.get("mask_public_key"), field=f"{field}.mask_public_key"),
    )


def roster_to_json(roster: Roster) -> dict[str, Any]:
    """Return a :class:`Roster` (with its config and codec) as a JSON object."""
    cfg, codec = roster.config, roster.config.codec
    return {
        "session": roster.session,
        "config": {
            "threshold": cfg.threshold,
            "vector_length": cfg.vector_length,
            "neighbours": cfg.neighbours,
            "codec": {"bits": codec.bits, "scale": codec.scale, "clip": codec.clip},
        },
        "members": [advertise_to_json(m) for m in roster.members],
        "graph_seed": _b64(roster.graph_seed),
    }


def roster_from_json(value: Any, *, field: str = "roster") -> Roster:
    """Decode :func:`roster_to_json`'s output; the config is validated by its constructors."""
    obj = _obj(value, field=field)
    cfg = _obj(obj.get("config"), field=f"{field}.config")
    codec = _obj(cfg.get("codec"), field=f"{field}.config.codec")
    neighbours = cfg.get("neighbours")
    config = SecAggConfig(
        threshold=_int(cfg.get("threshold"), field=f"{field}.config.threshold"),
        vector_length=_int(cfg.get("vector_length"), field=f"{field}.config.vector_length"),
        codec=FixedPointCodec(
            bits=_int(codec.get("bits"), field=f"{field}.config.codec.bits"),
            scale=float(codec.get("scale", 0.0)),
            clip=float(codec.get("clip", 0.0)),
        ),
        neighbours=None
        if neighbours is None
        else _int(neighbours, field=f"{field}.config.neighbours"),
    )
    members = tuple(
        advertise_from_json(m, field=f"{field}.members[{i}]")
        for i, m in enumerate(_list(obj.get("members"), field=f"{field}.members"))
    )
    return Roster(
        _text(obj.get("session"), field=f"{field}.session"),
        config,
        members,
        _unb64(obj.get("graph_seed"), field=f"{field}.graph_seed"),
    )


def _share_to_json(share: EncryptedShare) -> dict[str, Any]:
    return {
        "sender": share.sender,
        "recipient": share.recipient,
        "nonce": _b64(share.nonce),
        "ciphertext": _b64(share.ciphertext),
    }


def _share_from_json(value: Any, *, field: str) -> EncryptedShare:
    obj = _obj(value, field=field)
    return EncryptedShare(
        _text(obj.get("sender"), field=f"{field}.sender"),
        _text(obj.get("recipient"), field=f"{field}.recipient"),
        _unb64(obj.get("nonce"), field=f"{field}.nonce"),
        _unb64(obj.get("ciphertext"), field=f"{field}.ciphertext"),
    )


def _shares_from_json(value: Any, *, field: str) -> tuple[EncryptedShare, ...]:
    return tuple(
        _share_from_json(s, field=f"{field}[{i}]") for i, s in enumerate(_list(value, field=field))
    )


def bundle_to_json(bundle: ShareBundle) -> dict[str, Any]:
    """Return a :class:`ShareBundle` as a JSON object."""
    return {"recipient": bundle.recipient, "shares": [_share_to_json(s) for s in bundle.shares]}


def bundle_from_json(value: Any, *, field: str = "bundle") -> ShareBundle:
    """Decode :func:`bundle_to_json`'s output."""
    obj = _obj(value, field=field)
    return ShareBundle(
        _text(obj.get("recipient"), field=f"{field}.recipient"),
        _shares_from_json(obj.get("shares"), field=f"{field}.shares"),
    )


def request_to_json(request: UnmaskRequest) -> dict[str, Any]:
    """Return an :class:`UnmaskRequest` as a JSON object."""
    return {"survivors": list(request.survivors), "dropped": list(request.dropped)}


def request_from_json(value: Any, *, field: str = "request") -> UnmaskRequest:
    """Decode :func:`request_to_json`'s output."""
    obj = _obj(value, field=field)
    return UnmaskRequest(
        tuple(
            _text(c, field=f"{field}.survivors")
            for c in _list(obj.get("survivors"), field=f"{field}.survivors")
        ),
        tuple(
            _text(c, field=f"{field}.dropped")
            for c in _list(obj.get("dropped"), field=f"{field}.dropped")
        ),
    )


# -- client to server ------------------------------------------------------------------------
def share_keys_to_json(message: ShareKeys) -> dict[str, Any]:
    """Return a :class:`ShareKeys` as a JSON object."""
    return {"client_id": message.client_id, "shares": [_share_to_json(s) for s in message.shares]}


def share_keys_from_json(value: Any, *, field: str = "share_keys") -> ShareKeys:
    """Decode :func:`share_keys_to_json`'s output."""
    obj = _obj(value, field=field)
    return ShareKeys(
        _text(obj.get("client_id"), field=f"{field}.client_id"),
        _shares_from_json(obj.get("shares"), field=f"{field}.shares"),
    )


def unmask_to_json(message: UnmaskResponse) -> dict[str, Any]:
    """Return an :class:`UnmaskResponse` as a JSON object."""
    return {
        "client_id": message.client_id,
        "self_mask_shares": {k: _b64(v) for k, v in message.self_mask_shares.items()},
        "key_shares": {k: _b64(v) for k, v in message.key_shares.items()},
    }


def unmask_from_json(value: Any, *, field: str = "unmask") -> UnmaskResponse:
    """Decode :func:`unmask_to_json`'s output."""
    obj = _obj(value, field=field)

    def shares(name: str) -> dict[str, bytes]:
        raw = _obj(obj.get(name), field=f"{field}.{name}")
        return {
            _text(k, field=f"{field}.{name}"): _unb64(v, field=f"{field}.{name}[{k!r}]")
            for k, v in raw.items()
        }

    return UnmaskResponse(
        _text(obj.get("client_id"), field=f"{field}.client_id"),
        shares("self_mask_shares"),
        shares("key_shares"),
    )


def json_to_tensors(value: Mapping[str, Any]) -> Parameters:
    """Pack a JSON object as the ``uint8`` tensor a client answers with."""
    data = json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
    return OrderedDict([(MESSAGE_KEY, np.frombuffer(data, dtype=np.uint8).copy())])


def json_from_tensors(params: Mapping[str, np.ndarray], *, field: str) -> Mapping[str, Any]:
    """Unpack :func:`json_to_tensors`; raise InvalidInput naming ``field`` if it is not that."""
    array = params.get(MESSAGE_KEY)
    if set(params) != {MESSAGE_KEY} or array is None or array.dtype != np.uint8 or array.ndim != 1:
        raise InvalidInput(
            f"`{field}` must be one 1-D uint8 tensor named {MESSAGE_KEY!r}; got "
            f"{sorted(params)[:5]}.",
            field=field,
        )
    try:
        value = json.loads(array.tobytes())
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidInput(f"`{field}` is not JSON: {err}.", field=field) from err
    return _obj(value, field=field)


def masked_to_tensors(message: MaskedInput) -> Parameters:
    """Pack a :class:`MaskedInput` as the ``uint64`` tensor a client answers with."""
    return OrderedDict([(MASKED_KEY, np.ascontiguousarray(message.vector, dtype=np.uint64))])


def masked_from_tensors(
    params: Mapping[str, np.ndarray], *, client_id: str, field: str
) -> MaskedInput:
    """Unpack :func:`masked_to_tensors` (the ring and length are checked by the server)."""
    array = params.get(MASKED_KEY)
    if set(params) != {MASKED_KEY} or array is None or array.dtype != np.uint64:
        raise InvalidInput(
            f"`{field}` must be one uint64 tensor named {MASKED_KEY!r}; got {sorted(params)[:5]}.",
            field=field,
        )
    return MaskedInput(client_id, array.reshape(-1))
