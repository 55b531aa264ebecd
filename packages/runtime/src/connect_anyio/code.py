"""Connect error codes and their mappings to HTTP statuses and gRPC status numbers."""

from __future__ import annotations

__all__ = ["Code"]

import enum


class Code(enum.Enum):
    """The error codes shared by Connect, gRPC and gRPC-Web.

    The value is the code's name on the Connect wire (the ``code`` field of the
    JSON error); ``grpc_number`` is its number in ``grpc-status``.
    """

    CANCELED = "canceled"
    """The call was canceled, usually by the caller."""
    UNKNOWN = "unknown"
    """An error of unclear origin, or one with no better code."""
    INVALID_ARGUMENT = "invalid_argument"
    """The request is invalid whatever the state of the system."""
    DEADLINE_EXCEEDED = "deadline_exceeded"
    """The deadline passed before the call completed."""
    NOT_FOUND = "not_found"
    """A requested resource does not exist."""
    ALREADY_EXISTS = "already_exists"
    """The resource the caller tried to create exists already."""
    PERMISSION_DENIED = "permission_denied"
    """The caller may not perform the operation."""
    RESOURCE_EXHAUSTED = "resource_exhausted"
    """A resource (a quota, a size limit) is exhausted."""
    FAILED_PRECONDITION = "failed_precondition"
    """The system is not in the state the operation needs."""
    ABORTED = "aborted"
    """The operation was aborted, typically by a concurrency conflict."""
    OUT_OF_RANGE = "out_of_range"
    """The operation went past the valid range."""
    UNIMPLEMENTED = "unimplemented"
    """The operation is not implemented, supported or enabled."""
    INTERNAL = "internal"
    """An invariant of the system is broken."""
    UNAVAILABLE = "unavailable"
    """The service is unavailable for now; retrying may help."""
    DATA_LOSS = "data_loss"
    """Unrecoverable data loss or corruption."""
    UNAUTHENTICATED = "unauthenticated"
    """The caller has no valid credentials."""

    @property
    def grpc_number(self) -> int:
        """The code's number in gRPC's ``grpc-status``."""
        return _GRPC_NUMBER[self]

    @property
    def http_status(self) -> int:
        """The HTTP status a Connect unary error response with this code carries."""
        return _HTTP_STATUS[self]

    @classmethod
    def from_grpc_number(cls, number: int) -> Code | None:
        """The code for a ``grpc-status`` number: ``None`` for 0 (OK), UNKNOWN if out of range."""
        if number == 0:
            return None
        return _FROM_GRPC_NUMBER.get(number, Code.UNKNOWN)

    @classmethod
    def from_name(cls, name: str) -> Code | None:
        """The code for its Connect wire name, or ``None`` when the name is not a code."""
        return _FROM_NAME.get(name)

    @classmethod
    def from_http_status(cls, status: int) -> Code:
        """The code inferred from an HTTP status when the response carries no explicit code.

        This is the table shared by the Connect spec and gRPC's HTTP-to-gRPC mapping.
        """
        return _FROM_HTTP_STATUS.get(status, Code.UNKNOWN)


_GRPC_NUMBER: dict[Code, int] = {
    Code.CANCELED: 1,
    Code.UNKNOWN: 2,
    Code.INVALID_ARGUMENT: 3,
    Code.DEADLINE_EXCEEDED: 4,
    Code.NOT_FOUND: 5,
    Code.ALREADY_EXISTS: 6,
    Code.PERMISSION_DENIED: 7,
    Code.RESOURCE_EXHAUSTED: 8,
    Code.FAILED_PRECONDITION: 9,
    Code.ABORTED: 10,
    Code.OUT_OF_RANGE: 11,
    Code.UNIMPLEMENTED: 12,
    Code.INTERNAL: 13,
    Code.UNAVAILABLE: 14,
    Code.DATA_LOSS: 15,
    Code.UNAUTHENTICATED: 16,
}
_FROM_GRPC_NUMBER: dict[int, Code] = {n: c for c, n in _GRPC_NUMBER.items()}
_FROM_NAME: dict[str, Code] = {c.value: c for c in Code}

_HTTP_STATUS: dict[Code, int] = {
    Code.CANCELED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}

_FROM_HTTP_STATUS: dict[int, Code] = {
    400: Code.INTERNAL,
    401: Code.UNAUTHENTICATED,
    403: Code.PERMISSION_DENIED,
    404: Code.UNIMPLEMENTED,
    429: Code.UNAVAILABLE,
    502: Code.UNAVAILABLE,
    503: Code.UNAVAILABLE,
    504: Code.UNAVAILABLE,
}
