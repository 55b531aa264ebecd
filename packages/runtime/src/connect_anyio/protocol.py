"""Which wire protocol a client speaks."""

from __future__ import annotations

__all__ = ["ProtocolType"]

import enum


class ProtocolType(enum.Enum):
    """A protocol supported by connect-anyio; servers speak all three at once."""

    CONNECT = 1
    """The Connect protocol (HTTP/1.1 or HTTP/2)."""
    GRPC = 2
    """gRPC (HTTP/2 only)."""
    GRPC_WEB = 3
    """gRPC-Web (HTTP/1.1 or HTTP/2)."""
