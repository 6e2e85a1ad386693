"""Bearer tokens of enrolled clients: generation, token files and constant-time checks."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from fedloop.core import ConfigError, Conflict

__all__ = [
    "CLIENT_ID_PATTERN",
    "Authenticator",
    "TokenTable",
    "check_client_id",
    "generate_tokens",
    "read_client_token",
    "read_token_file",
    "write_token_file",
]

#: What a client id may look like (it appears in URLs, logs and store rows).
CLIENT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_MIN_TOKEN_CHARS = 16


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def check_client_id(client_id: str, *, field: str = "client_id") -> str:
    """Return ``client_id`` if it is a valid id, else raise :class:`ConfigError`."""
    if not isinstance(client_id, str) or not CLIENT_ID_PATTERN.fullmatch(client_id):
        raise ConfigError(
            f"`{field}` must be 1-128 letters, digits, '.', '_' or '-'; got {client_id!r}.",
            field=field,
            value=client_id,
        )
    return client_id


@runtime_checkable
class Authenticator(Protocol):
    """Who a client is, from its ``Authorization`` header: what the HTTP transport asks.

    Implemented by :class:`TokenTable` (a fixed token file) and by
    :class:`fedloop.store.StoreAuthenticator` (the store's ``client`` credentials, which
    ``fedloop federated tokens`` creates and revokes while the coordinator runs).
    """

    def authenticate(self, authorization: str | None) -> str | None:
        """Return the client id an ``Authorization`` header value belongs to, or None."""
        ...


class TokenTable:
    """Enrolled clients and the sha256 of their bearer tokens (the tokens are not kept).

    Parameters
    ----------
    tokens : Mapping[str, str]
        Client id -> bearer token (at least 16 characters each, all distinct).

    Raises
    ------
    ConfigError
        For an invalid client id, a short token or a token shared by two clients.
    """

    def __init__(self, tokens: Mapping[str, str]) -> None:
        hashes: dict[str, bytes] = {}
        for client_id, token in tokens.items():
            check_client_id(client_id, field="tokens")
            if not isinstance(token, str) or len(token) < _MIN_TOKEN_CHARS:
                raise ConfigError(
                    f"the token of client {client_id!r} must be a string of at least "
                    f"{_MIN_TOKEN_CHARS} characters.",
                    field=f"tokens.{client_id}",
                    hint="Generate tokens with `fedloop federated serve --enroll N`.",
                )
            hashes[client_id] = _digest(token)
        if len(set(hashes.values())) != len(hashes):
            raise ConfigError(
                "two clients share one token; every client needs its own.", field="tokens"
            )
        self._hashes = hashes

    @property
    def client_ids(self) -> list[str]:
        """Return the enrolled client ids, sorted."""
        return sorted(self._hashes)

    def authenticate(self, authorization: str | None) -> str | None:
        """Return the client id an ``Authorization`` header value belongs to, or None.

        Every enrolled hash is compared (with :func:`hmac.compare_digest`), so the time taken
        does not reveal which client, if any, nearly matched.

        Parameters
        ----------
        authorization : str or None
            The header value, ``"Bearer <token>"``.

        Returns
        -------
        str or None
            The client id, or None for a missing, malformed or unknown token.
        """
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        presented = _digest(token.strip())
        found: str | None = None
        for client_id, expected in self._hashes.items():
            if hmac.compare_digest(presented, expected):
                found = client_id
        return found


def generate_tokens(client_ids: Iterable[str]) -> dict[str, str]:
    """Return a fresh random bearer token (256 bits, URL-safe) for each client id.

    Parameters
    ----------
    client_ids : iterable of str
        The clients to enroll.

    Returns
    -------
    dict
        Client id -> token.
    """
    return {check_client_id(c): secrets.token_urlsafe(32) for c in client_ids}


def write_token_file(path: Path, tokens: Mapping[str, str]) -> None:
    """Write ``tokens`` as JSON readable only by the owner (mode 0600); never overwrite.

    Parameters
    ----------
    path : Path
        The new file.
    tokens : Mapping[str, str]
        Client id -> token.

    Raises
    ------
    Conflict
        When the file exists already.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as err:
        raise Conflict(
            f"token file {path} exists already; enrolling would replace every client's token.",
            field="token_file",
            hint="Use it with --token-file and without --enroll, or delete it first.",
        ) from err
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)  # the umask may have cleared bits; never widen them
        json.dump(dict(tokens), handle, indent=2, sort_keys=True)
        handle.write("\n")


def read_token_file(path: Path) -> dict[str, str]:
    """Read a token file written by :func:`write_token_file` (client id -> token).

    Raises
    ------
    ConfigError
        When the file is missing, is not a JSON object of strings or holds no client.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(
            f"cannot read token file {path}: {err.strerror}.", field="token_file"
        ) from err
    except ValueError as err:
        raise ConfigError(f"token file {path} is not JSON: {err}.", field="token_file") from err
    if (
        not isinstance(data, dict)
        or not data
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items())
    ):
        raise ConfigError(
            f"token file {path} must be a non-empty JSON object of client id -> token.",
            field="token_file",
        )
    return data


def read_client_token(path: Path, client_id: str) -> str:
    """Return one client's token from a file holding either the token alone or the JSON map.

    Raises
    ------
    ConfigError
        When the file cannot be read or holds no token for ``client_id``.
    """
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ConfigError(
            f"cannot read token file {path}: {err.strerror}.", field="token_file"
        ) from err
    if not text.startswith("{"):
        if not text:
            raise ConfigError(f"token file {path} is empty.", field="token_file")
        return text
    tokens = read_token_file(path)
    if client_id not in tokens:
        raise ConfigError(
            f"token file {path} has no token for client {client_id!r}.",
            field="token_file",
            hint="Check --client-id against the ids the coordinator enrolled.",
        )
    return tokens[client_id]
