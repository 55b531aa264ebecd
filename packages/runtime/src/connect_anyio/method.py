"""Static description of an RPC method: its name, types, stream type and idempotency."""

from __future__ import annotations

__all__ = ["IdempotencyLevel", "MethodInfo", "StreamType"]

import enum
from dataclasses import dataclass, field
from typing import Generic, TypeVar

REQ = TypeVar("REQ")
RES = TypeVar("RES")


class IdempotencyLevel(enum.Enum):
    """How safe a method is to repeat, from the proto option ``idempotency_level``.

    Methods with ``NO_SIDE_EFFECTS`` may be called with HTTP GET in the Connect protocol.
    """

    UNKNOWN = enum.auto()
    """Nothing is promised; the default."""
    NO_SIDE_EFFECTS = enum.auto()
    """The call changes no state (an HTTP "safe" method): GET is allowed."""
    IDEMPOTENT = enum.auto()
    """Repeating the call has the same effect as making it once."""


class StreamType(enum.Enum):
    """Which side of a call sends a stream of messages."""

    UNARY = enum.auto()
    """One request, one response."""
    CLIENT_STREAM = enum.auto()
    """A stream of requests, one response."""
    SERVER_STREAM = enum.auto()
    """One request, a stream of responses."""
    BIDI_STREAM = enum.auto()
    """Streams both ways."""

    @property
    def streams_requests(self) -> bool:
        """Whether the client sends a stream of messages."""
        return self in (StreamType.CLIENT_STREAM, StreamType.BIDI_STREAM)

    @property
    def streams_responses(self) -> bool:
        """Whether the server sends a stream of messages."""
        return self in (StreamType.SERVER_STREAM, StreamType.BIDI_STREAM)


@dataclass(kw_only=True, frozen=True, slots=True)
class MethodInfo(Generic[REQ, RES]):
    """A method of a service, as generated code declares it once per method."""

    name: str
    """The method's name in the proto file, e.g. ``MakeHat``."""
    service_name: str
    """The fully qualified service name, e.g. ``acme.hats.v1.Haberdasher``."""
    input: type[REQ]
    """The request message type."""
    output: type[RES]
    """The response message type."""
    idempotency_level: IdempotencyLevel = IdempotencyLevel.UNKNOWN
    """The method's idempotency level."""
    stream_type: StreamType = StreamType.UNARY
    """Which sides stream."""
    procedure: str = field(init=False)
    """The URL path of the method: ``/<service_name>/<name>``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "procedure", f"/{self.service_name}/{self.name}")
