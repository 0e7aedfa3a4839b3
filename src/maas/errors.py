"""Domain errors of maas. No HTTP here: `maas.api.errors` maps each class to a status.

MaasError                      (itself: internal_error, when maas did not expect it)
├── InternalError              what the client hears of a bug; the log has the rest
├── BadRequest                 the request itself is malformed (bad JSON, missing field)
│   └── NoPostprocess          :classify on a version that declares no postprocess
├── PayloadTooLarge            a body over its cap
├── InvalidInput               instances that do not match the signature or domain
├── InvalidArtifact            an upload whose meta or file cannot be a version
├── AuthError
│   ├── Unauthenticated        no key, or a key we do not know
│   └── Forbidden              a key without the needed scope
├── NotFound
│   ├── ModelNotFound
│   ├── VersionNotFound
│   ├── AliasNotFound
│   ├── KeyNotFound
│   └── RolloutNotFound
├── Conflict
│   ├── AlreadyExists
│   ├── VersionNotReady
│   ├── AliasInUse
│   ├── ConcurrentChange
│   ├── NothingToUndo          a rollback with no change of the alias left to undo
│   ├── LastAdminKey           revoking it would leave no admin key
│   ├── BelowAgreement         aliasing a derived version that agrees too little with its parent
│   ├── RolloutInProgress      a manual change of an alias a rollout owns, or a second rollout
│   └── RolloutEnded           a verb on a rollout that has ended
├── Overloaded                 queue full; carries retry_after seconds
│   └── RateLimited            the key's requests per second are used up
├── InsufficientStorage        the artifact store's disk is full
├── Unavailable                no ready backend
│   ├── RegistryUnavailable    the registry database cannot be reached
│   ├── StoreUnavailable       the artifact store (object storage) cannot be reached
│   └── WorkerLost             the worker holding a call went away before answering
├── DeadlineExceeded           the request's deadline passed before inference
├── ClientDisconnected         the client hung up before its result was ready
└── ModelLoadError             a version could not be loaded (kept as its load error)
    └── WorkerCrashedLoading   the worker died while loading it
"""

from __future__ import annotations


class MaasError(Exception):
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InternalError(MaasError):
    """Something maas did not expect; the client sees only that, the log has the rest."""


class BadRequest(MaasError):
    code = "bad_request"


class NoPostprocess(BadRequest):
    code = "no_postprocess"


class PayloadTooLarge(MaasError):
    code = "payload_too_large"


class InvalidInput(MaasError):
    code = "invalid_input"


class InvalidArtifact(MaasError):
    code = "invalid_artifact"


class AuthError(MaasError):
    pass


class Unauthenticated(AuthError):
    code = "unauthenticated"


class Forbidden(AuthError):
    code = "forbidden"


class NotFound(MaasError):
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class VersionNotFound(NotFound):
    code = "version_not_found"


class AliasNotFound(NotFound):
    code = "alias_not_found"


class KeyNotFound(NotFound):
    code = "key_not_found"


class RolloutNotFound(NotFound):
    code = "rollout_not_found"


class Conflict(MaasError):
    code = "conflict"


class AlreadyExists(Conflict):
    code = "already_exists"


class VersionNotReady(Conflict):
    code = "version_not_ready"

    def __init__(self, message: str, *, model: str | None = None, version: int | None = None):
        super().__init__(message)
        self.model = model  # the version the ref resolved to, when there is one
        self.version = version


class AliasInUse(Conflict):
    code = "alias_in_use"


class ConcurrentChange(Conflict):
    code = "concurrent_change"


class NothingToUndo(Conflict):
    code = "nothing_to_undo"


class LastAdminKey(Conflict):
    code = "last_admin_key"


class BelowAgreement(Conflict):
    code = "below_agreement"


class RolloutInProgress(Conflict):
    code = "rollout_in_progress"


class RolloutEnded(Conflict):
    code = "rollout_ended"


class Overloaded(MaasError):
    code = "queue_full"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(Overloaded):
    """The key's requests per second are used up (429, with Retry-After)."""

    code = "rate_limited"


class InsufficientStorage(MaasError):
    """The artifact store's disk is full (507); nothing of the upload was kept."""

    code = "insufficient_storage"


class Unavailable(MaasError):
    code = "unavailable"


class RegistryUnavailable(Unavailable):
    """The registry database cannot be reached: writes (and reads that need it) wait for it."""

    code = "registry_unavailable"


class StoreUnavailable(Unavailable):
    """The artifact store (object storage) cannot be reached or refused the request."""

    code = "store_unavailable"


class WorkerLost(Unavailable):
    """The worker holding a call went away before answering."""


class DeadlineExceeded(MaasError):
    code = "deadline_exceeded"


class ClientDisconnected(MaasError):
    code = "client_disconnected"


class ModelLoadError(MaasError):
    code = "model_load_error"


class WorkerCrashedLoading(ModelLoadError):
    code = "model_load_error"

    def __init__(self, message: str, *, death: str) -> None:
        super().__init__(message)
        self.death = death  # names the process that died: two calls it held are one death
