"""Who may do what: credential kinds, roles and the rule that orders them (no I/O)."""

from __future__ import annotations

import ipaddress
from typing import Literal

__all__ = [
    "CREDENTIAL_KINDS",
    "ROLES",
    "CredentialKind",
    "Role",
    "is_loopback_host",
    "role_allows",
]

#: ``client``: a federated client's enrollment token; ``api``: a control-plane API key.
CredentialKind = Literal["client", "api"]
CREDENTIAL_KINDS: tuple[CredentialKind, ...] = ("client", "api")

#: ``admin`` > ``operator`` > ``viewer``; ``client`` stands apart (machines that send data).
Role = Literal["admin", "operator", "viewer", "client"]
ROLES: tuple[Role, ...] = ("admin", "operator", "viewer", "client")

_RANK: dict[str, int] = {"viewer": 1, "operator": 2, "admin": 3}
#: Who may send data (payload logs, federated updates): machines, and people who may act.
_SENDERS = frozenset({"client", "operator", "admin"})


def role_allows(role: str, needs: Role) -> bool:
    """Return whether a credential of ``role`` may call a route that ``needs`` a role.

    ``admin`` includes ``operator``, which includes ``viewer``. ``client`` may only send
    data (routes that need ``client``), and so may ``operator`` and ``admin``; a ``viewer``
    only reads, and a ``client`` reads nothing.

    Parameters
    ----------
    role : str
        The caller's role.
    needs : {"admin", "operator", "viewer", "client"}
        The least role the route needs.

    Returns
    -------
    bool
        True when allowed.

    Examples
    --------
    >>> role_allows("operator", "viewer"), role_allows("client", "viewer")
    (True, False)
    """
    if needs == "client":
        return role in _SENDERS
    return _RANK.get(role, 0) >= _RANK[needs]


def is_loopback_host(host: str) -> bool:
    """Return whether ``host`` (an interface to bind) is reachable only from this machine.

    Parameters
    ----------
    host : str
        ``127.0.0.1``, ``::1``, ``localhost``, ``0.0.0.0``, a name or an address.

    Returns
    -------
    bool
        True for ``localhost`` and loopback addresses; False for anything else, including
        the wildcard addresses and names that DNS could resolve elsewhere.
    """
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
