"""protoc-gen-connect-anyio: a protoc/buf plugin generating connect-anyio services and clients.

For every proto file with services it writes ``<name>_connect.py`` beside protoc's
``<name>_pb2.py``: a ``Protocol`` per service to implement (async and sync), the
method descriptors, an ASGI application and a client.
"""

from __future__ import annotations

__all__ = ["generate", "main"]

from ._plugin import generate, main
