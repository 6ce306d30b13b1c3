"""The exceptions a durio Client raises.

Every one is a DurioError, which carries the Twirp error code, the message
and metadata the server sent, and the HTTP status (0 when no server answered).
"""

from __future__ import annotations

from typing import Mapping, Optional

from ._gen.twirp_runtime import TwirpError


class DurioError(Exception):
    """Base of every error the client raises."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "unknown",
        meta: Optional[Mapping[str, str]] = None,
        status: int = 0,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.meta = dict(meta or {})
        self.status = status


class NotFound(DurioError):
    """The key does not exist (Twirp not_found, HTTP 404)."""


class InvalidArgument(DurioError):
    """The request is malformed or breaks a limit: empty or invalid UTF-8
    key, key or value too long (Twirp invalid_argument, malformed,
    out_of_range; HTTP 400 or 413). Retrying the same request cannot help."""


class Unavailable(DurioError):
    """No replica could serve the request before the timeout: no leader, or
    no endpoint reachable. A write that raises Unavailable was not applied."""


class OutcomeUnknown(DurioError):
    """A write may or may not have been applied: the time ran out after it
    was sent. The client retried it with the same write id, so it was applied
    at most once; read the key to learn which."""


class PreconditionFailed(DurioError):
    """The cluster refused the request in its current state (Twirp
    failed_precondition), for example a write whose exactly-once session
    expired while its outcome was unknown."""


class ConditionFailed(PreconditionFailed):
    """A conditional put or delete found its condition false; nothing was
    written (Twirp failed_precondition, reason condition_failed; HTTP 409 on
    REST). current is the key as it was (a kv_pb2.KeyValue, None if absent)
    and revision the store revision then. Never retried."""

    def __init__(self, message: str, *, current=None, revision: int = 0, **kw) -> None:
        super().__init__(message, **kw)
        self.current = current
        self.revision = revision


class LeaseNotFound(PreconditionFailed):
    """The lease has ended (expired or revoked) or never existed (reason
    lease_not_found, whether the code is failed_precondition, as for a
    keep-alive or a put, or not_found, as for a txn's put)."""


class NoSpace(PreconditionFailed):
    """The write would grow the cluster's keys and values past its quota
    (--quota-bytes; Twirp failed_precondition, reason no_space; HTTP 507 on
    REST, 412 on Twirp). Nothing was applied, and retrying cannot help until
    room is made: deletes, and writes that do not grow the data, still
    apply."""


class Compacted(DurioError):
    """The revision asked for is older than the history the cluster keeps:
    read the current state and start again from its revision."""


class PermissionDenied(DurioError):
    """The cluster refused the caller: its token's role does not allow the
    call (Twirp permission_denied, HTTP 403), or, as the subclass
    Unauthenticated, it has no token the cluster accepts. Never retried at
    another replica (each would answer the same); nothing was applied."""


class Unauthenticated(PermissionDenied):
    """The cluster requires a token and the request had none, or one it does
    not know (Twirp unauthenticated, HTTP 401): give Client(token=...)."""


_BY_CODE = {
    "not_found": NotFound,
    "invalid_argument": InvalidArgument,
    "malformed": InvalidArgument,
    "out_of_range": InvalidArgument,
    "unavailable": Unavailable,
    "resource_exhausted": Unavailable,
    "deadline_exceeded": OutcomeUnknown,
    "failed_precondition": PreconditionFailed,
    "unauthenticated": Unauthenticated,
    "permission_denied": PermissionDenied,
}


def from_twirp(err: TwirpError) -> DurioError:
    """Maps a Twirp error the server answered to the matching exception."""
    cls = _BY_CODE.get(err.code, DurioError)
    reason = err.meta.get("reason", "")
    if err.status == 413:
        cls = InvalidArgument
    elif err.status == 401:
        cls = Unauthenticated
    elif err.status == 403:
        cls = PermissionDenied
    elif err.code == "failed_precondition" and reason == "condition_failed":
        from ._gen.kv.v1 import kv_pb2

        meta = err.meta
        current = None
        if meta.get("exists") == "true":
            current = kv_pb2.KeyValue(
                value=meta.get("value", ""), create_revision=int(meta.get("create_revision", "0")),
                mod_revision=int(meta.get("mod_revision", "0")), version=int(meta.get("version", "0")),
                lease=int(meta.get("lease", "0")))
        return ConditionFailed(err.msg or err.code, current=current, revision=int(meta.get("revision", "0")),
                               code=err.code, meta=err.meta, status=err.status)
    elif err.code in ("failed_precondition", "not_found") and reason == "lease_not_found":
        cls = LeaseNotFound
    elif err.code == "failed_precondition" and reason == "no_space":
        cls = NoSpace
    elif err.code == "out_of_range" and reason == "compacted":
        cls = Compacted
    return cls(err.msg or err.code, code=err.code, meta=err.meta, status=err.status)
