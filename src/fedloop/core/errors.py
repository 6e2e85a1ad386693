"""The one error tree of fedloop.

::

    FedloopError
    ├── ConfigError(ValueError)              bad fedloop.toml, environment variable or flag
    ├── InvalidInput(ValueError)             bad argument, body, array or model update
    │   ├── SignatureMismatch                an ONNX graph or tensor that does not fit its signature
    │   ├── MalformedBody                    a request body that is not JSON of the expected shape (400)
    │   └── BodyTooLarge                     a request body over the configured limit (413)
    ├── NotFound(LookupError)                an id, name, alias or artifact that does not exist
    │   └── ArtifactMissing                  a recorded artifact whose bytes are gone
    ├── Conflict                             the object exists already or the state forbids the change
    ├── IntegrityError                       stored bytes or events that were changed behind our back
    │   ├── ArtifactCorrupt                  artifact bytes whose sha256 no longer matches
    │   └── AuditChainBroken                 an audit event edited, inserted or deleted
    ├── StoreUnavailable(ConnectionError)    the metadata or artifact store cannot be reached (retryable)
    ├── SchemaTooNew                         the database was migrated by a newer fedloop
    ├── MissingExtraError(ImportError)       an optional dependency is not installed
    ├── FederationError                      a federated round could not complete
    │   ├── InconsistentReplies
    │   ├── AggregationError
    │   └── RoundTimeout(TimeoutError)
    ├── DistributedError                     data-parallel training could not complete
    │   ├── RendezvousError(ConnectionError) the workers' rendezvous cannot be reached or formed
    │   └── WorkersFailed                    workers kept failing after every allowed restart
    ├── PrivacyBudgetExhausted               the differential-privacy budget is spent
    ├── Unauthenticated(PermissionError)     no credential, or an unknown or revoked one (401)
    └── Forbidden(PermissionError)           a credential whose role does not allow the call (403)

Every class carries a stable ``code``, an ``exit_code`` for the CLI and an ``http_status``
for the API; messages say what was wrong, where, what was got and what to do, and the same
facts are attributes (``field``, ``value``, ``hint``) for the shells to render.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AggregationError",
    "ArtifactCorrupt",
    "ArtifactMissing",
    "AuditChainBroken",
    "BodyTooLarge",
    "ConfigError",
    "Conflict",
    "DistributedError",
    "FederationError",
    "FedloopError",
    "FedloopWarning",
    "Forbidden",
    "InconsistentReplies",
    "IntegrityError",
    "InvalidInput",
    "MalformedBody",
    "MissingExtraError",
    "NotFound",
    "PrivacyBudgetExhausted",
    "RendezvousError",
    "RoundTimeout",
    "SchemaTooNew",
    "SignatureMismatch",
    "StoreUnavailable",
    "Unauthenticated",
    "WorkersFailed",
]


class FedloopError(Exception):
    """Root of every error fedloop raises on purpose.

    Parameters
    ----------
    message : str
        What was wrong, where and what was got.
    field : str or None, default None
        The dotted name of the offending field, option or argument.
    value : Any, default None
        The offending value, when it helps to show it.
    hint : str or None, default None
        What to do about it.
    """

    code: ClassVar[str] = "fedloop_error"
    exit_code: ClassVar[int] = 1
    http_status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" not in cls.__dict__:
            raise TypeError(f"{cls.__name__} must set a class attribute `code` (a stable string)")

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        value: Any = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.value = value
        self.hint = hint

    def __str__(self) -> str:
        if self.hint and self.hint not in self.message:
            return f"{self.message} {self.hint}"
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """Return the error as the API's ``{"code", "message", "field", "hint"}`` body.

        Returns
        -------
        dict
            JSON-ready mapping.
        """
        return {"code": self.code, "message": self.message, "field": self.field, "hint": self.hint}


class ConfigError(FedloopError, ValueError):
    """A configuration value (file, environment or flag) is malformed."""

    code = "config_error"
    exit_code = 2
    http_status = 400


class InvalidInput(FedloopError, ValueError):
    """An argument, request body, array or model update is malformed."""

    code = "invalid_input"
    exit_code = 2
    http_status = 422


class SignatureMismatch(InvalidInput):
    """A graph or tensor does not match the declared input/output signature."""

    code = "signature_mismatch"


class MalformedBody(InvalidInput):
    """A request body is not a JSON document of the expected shape (HTTP 400)."""

    code = "malformed_body"
    http_status = 400


class BodyTooLarge(InvalidInput):
    """A request body is larger than the configured limit (HTTP 413)."""

    code = "body_too_large"
    http_status = 413


class NotFound(FedloopError, LookupError):
    """The named object does not exist."""

    code = "not_found"
    exit_code = 3
    http_status = 404


class ArtifactMissing(NotFound):
    """An artifact is recorded but its bytes are not in the artifact store."""

    code = "artifact_missing"


class Conflict(FedloopError):
    """The object exists already, or its state forbids the change."""

    code = "conflict"
    exit_code = 4
    http_status = 409


class IntegrityError(FedloopError):
    """Stored data was changed outside fedloop."""

    code = "integrity_error"
    exit_code = 5
    http_status = 500


class ArtifactCorrupt(IntegrityError):
    """Artifact bytes no longer match their sha256 digest."""

    code = "artifact_corrupt"


class AuditChainBroken(IntegrityError):
    """An audit event was edited, inserted or deleted."""

    code = "audit_chain_broken"


class StoreUnavailable(FedloopError, ConnectionError):
    """The metadata or artifact store cannot be reached; retrying may help."""

    code = "store_unavailable"
    exit_code = 6
    http_status = 503
    retryable = True


class SchemaTooNew(FedloopError):
    """The database schema was written by a newer fedloop than this one."""

    code = "schema_too_new"
    exit_code = 6
    http_status = 500


class MissingExtraError(FedloopError, ImportError):
    """An optional dependency is needed but not installed."""

    code = "missing_extra"
    exit_code = 7
    http_status = 501


class FederationError(FedloopError):
    """A federated round could not complete."""

    code = "federation_error"
    exit_code = 8
    http_status = 500


class InconsistentReplies(FederationError):
    """Client replies disagree in a way that prevents aggregation."""

    code = "inconsistent_replies"


class AggregationError(FederationError):
    """The strategy could not aggregate the replies it got."""

    code = "aggregation_error"


class RoundTimeout(FederationError, TimeoutError):
    """Too few clients answered before the round deadline."""

    code = "round_timeout"


class DistributedError(FedloopError):
    """Data-parallel training could not complete."""

    code = "distributed_error"
    exit_code = 11
    http_status = 500


class RendezvousError(DistributedError, ConnectionError):
    """The workers' rendezvous endpoint cannot be reached, or the group did not form in time."""

    code = "rendezvous_error"
    retryable = True


class WorkersFailed(DistributedError):
    """A worker failed and the group ran out of restarts (or failed in a way restarts cannot fix)."""

    code = "workers_failed"


class PrivacyBudgetExhausted(FedloopError):
    """The differential-privacy budget (epsilon at the target delta) is spent."""

    code = "privacy_budget_exhausted"
    exit_code = 9
    http_status = 409


class Unauthenticated(FedloopError, PermissionError):
    """A request carries no credential, or an unknown, malformed or revoked one (HTTP 401)."""

    code = "unauthenticated"
    exit_code = 10
    http_status = 401


class Forbidden(FedloopError, PermissionError):
    """A credential's role does not allow the call (HTTP 403)."""

    code = "forbidden"
    exit_code = 10
    http_status = 403


class FedloopWarning(UserWarning):
    """Base class of the warnings fedloop emits."""
