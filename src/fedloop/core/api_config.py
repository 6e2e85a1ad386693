"""The [api] section of fedloop.toml (when API keys are asked for) and secret config values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, PlainSerializer, SecretStr, SerializationInfo

from fedloop.core.access import is_loopback_host
from fedloop.core.errors import ConfigError

__all__ = ["REVEAL_SECRETS", "ApiConfig", "AuthMode", "SecretText"]

#: Serialization context key: ``config.model_dump_json(context={REVEAL_SECRETS: True})`` writes
#: secrets in clear, for a config handed to a child process; any other dump masks them.
REVEAL_SECRETS = "reveal_secrets"

AuthMode = Literal["auto", "required", "off"]


def _dump_secret(value: SecretStr, info: SerializationInfo) -> str:
    context = info.context
    if isinstance(context, Mapping) and context.get(REVEAL_SECRETS):
        return value.get_secret_value()
    return "**********"


#: A secret config value: masked in ``repr``, in ``fedloop config show`` and in every JSON dump
#: that does not ask for it with :data:`REVEAL_SECRETS`.
SecretText = Annotated[SecretStr, PlainSerializer(_dump_secret, return_type=str, when_used="json")]


class ApiConfig(BaseModel):
    """Who may call the control plane (``fedloop up``) and the monitor (``fedloop monitor serve``).

    Callers send ``Authorization: Bearer <key>`` with a key from ``fedloop keys create``; each
    key has a role (admin > operator > viewer, and client, which may only send payload logs).
    ``/health/live`` never asks for a key.

    Parameters
    ----------
    auth : {"auto", "required", "off"}, default "auto"
        ``required``: every route asks for a key. ``auto``: a key is required when the server
        binds an interface other than loopback, or once the store holds any API key (revoked
        ones included: creating the first key opts in, and revoking the last one never opens
        the API again); a loopback server of a store without keys stays open for local
        development. ``off``: never; refused for a server bound off loopback.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    auth: AuthMode = "auto"

    def auth_required(self, host: str, *, keys_exist: bool) -> bool:
        """Return whether a server bound to ``host`` asks callers for an API key.

        Parameters
        ----------
        host : str
            The interface the server binds.
        keys_exist : bool
            Whether the store holds any API key (revoked ones included).

        Returns
        -------
        bool
            True when requests need a key.

        Raises
        ------
        ConfigError
            When ``auth = "off"`` and ``host`` is not loopback.
        """
        loopback = is_loopback_host(host)
        if self.auth == "off":
            if not loopback:
                raise ConfigError(
                    f"`api.auth` is 'off' but the server binds {host!r}, which other machines "
                    "can reach; the API would be open to them.",
                    field="api.auth",
                    value=self.auth,
                    hint="Set api.auth = 'auto' (or 'required') and create keys with "
                    "`fedloop keys create --role admin NAME`, or bind 127.0.0.1.",
                )
            return False
        return self.auth == "required" or not loopback or keys_exist
