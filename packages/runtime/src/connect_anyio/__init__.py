"""connect-anyio: Connect, gRPC and gRPC-Web for Python, on asyncio and trio."""

from __future__ import annotations

__all__ = [
    "Code",
    "Codec",
    "ConnectASGIApplication",
    "ConnectClient",
    "ConnectClientSync",
    "ConnectError",
    "ConnectWSGIApplication",
    "Endpoint",
    "EndpointSync",
    "HTTPClient",
    "HTTPVersion",
    "Headers",
    "IdempotencyLevel",
    "MethodInfo",
    "ProtocolType",
    "RequestContext",
    "ResponseMetadata",
    "ResponseStream",
    "ResponseStreamSync",
    "ServerLimits",
    "StreamType",
    "__version__",
    "proto_binary_codec",
    "proto_json_codec",
    "serve",
    "server_tls_context",
]

from ._serve import ServerLimits, serve, server_tls_context
from .client import (
    ConnectClient,
    ConnectClientSync,
    HTTPClient,
    HTTPVersion,
    ResponseMetadata,
    ResponseStream,
    ResponseStreamSync,
)
from .code import Code
from .codec import Codec, proto_binary_codec, proto_json_codec
from .errors import ConnectError
from .method import IdempotencyLevel, MethodInfo, StreamType
from .protocol import ProtocolType
from .request import Headers, RequestContext
from .server import ConnectASGIApplication, ConnectWSGIApplication, Endpoint, EndpointSync

__version__ = "0.1.0"
