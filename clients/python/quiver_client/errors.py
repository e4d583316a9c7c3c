"""One exception hierarchy for everything the server refuses: each gRPC status has its
class, and every error carries the server's own message (which names the field and the
offending value) and the status code. Client-side mistakes found before anything is sent
(a ragged array, an attribute of an unsupported type) raise ValueError / TypeError."""
from __future__ import annotations

from typing import Any, Dict, Optional, Type

import grpc


class QuiverError(Exception):
    """A call the server (or the channel) refused. `message` is the server's text,
    `code` the grpc.StatusCode; str(e) is "CODE: message"."""

    def __init__(self, message: str, code: Optional[Any] = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        name = getattr(self.code, "name", None)
        return "%s: %s" % (name, self.message) if name else self.message


class NotFound(QuiverError):
    """Unknown collection, or a query/example id that does not exist."""


class InvalidArgument(QuiverError):
    """A malformed request: wrong dimension, NaN, a bad filter, k over 1000..."""


class AlreadyExists(QuiverError):
    """The collection exists already."""


class FailedPrecondition(QuiverError):
    """The request is valid but the state forbids it (a rebuild is already running)."""


class ResourceExhausted(QuiverError):
    """A limit: message or reply size, items per call, write queue full, disk full."""


class Unauthenticated(QuiverError):
    """No API key, or an unknown one."""


class PermissionDenied(QuiverError):
    """The key's role or scope does not allow the call."""


class Unavailable(QuiverError):
    """The server cannot be reached, or is draining on shutdown."""


class DeadlineExceeded(QuiverError):
    """The call's timeout passed."""


class Internal(QuiverError):
    """A server bug or a corrupt record (the server logs the detail)."""


class Cancelled(QuiverError):
    """The call was cancelled."""


class Unimplemented(QuiverError):
    """The server does not have this method (an older quiverd)."""


_BY_CODE: Dict[Any, Type[QuiverError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.INTERNAL: Internal,
    grpc.StatusCode.DATA_LOSS: Internal,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
}


def error_class(code: Any) -> Type[QuiverError]:
    """The QuiverError subclass for a grpc.StatusCode (QuiverError itself for the rest)."""
    return _BY_CODE.get(code, QuiverError)


def from_rpc_error(e: Any, prefix: str = "") -> QuiverError:
    """Translates a grpc.RpcError (or grpc.aio.AioRpcError) into its QuiverError."""
    try:
        code = e.code()
        details = e.details() or ""
    except Exception:  # an RpcError that is not a call (should not happen)
        code, details = grpc.StatusCode.UNKNOWN, str(e)
    if not details and code is not None:
        details = code.name.lower().replace("_", " ")
    err = error_class(code)(prefix + details, code)
    return err
