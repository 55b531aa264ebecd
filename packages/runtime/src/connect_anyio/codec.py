"""Codecs turn messages into bytes and back: protobuf binary and protobuf JSON built in."""

from __future__ import annotations

__all__ = ["Codec", "proto_binary_codec", "proto_json_codec"]

import json
from typing import Any, Protocol, TypeVar, runtime_checkable

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

T_contra = TypeVar("T_contra", contravariant=True)
U = TypeVar("U")


@runtime_checkable
class Codec(Protocol[T_contra, U]):
    """Serializes messages for the wire.

    ``name()`` is the codec's name in content types: ``application/<name>`` for
    Connect unary, ``application/connect+<name>``, ``application/grpc+<name>`` and
    ``application/grpc-web+<name>`` for the others.

    ``decode`` raises any exception on malformed input; the runtime reports it as
    ``invalid_argument`` (server) or ``internal`` (client).
    """

    def name(self) -> str:
        """The codec's name, e.g. ``proto`` or ``json``."""
        ...

    def encode(self, message: T_contra) -> bytes:
        """Serializes a message."""
        ...

    def decode(self, data: bytes | memoryview, message_type: type[U]) -> U:
        """Parses a message of ``message_type`` from ``data``."""
        ...


class ProtoBinaryCodec:
    """The protobuf binary format (``proto``)."""

    __slots__ = ()

    def name(self) -> str:
        return "proto"

    def encode(self, message: Message) -> bytes:
        return message.SerializeToString()

    def encode_deterministic(self, message: Message) -> bytes:
        """A stable encoding, for GET URLs that caches should share."""
        return message.SerializeToString(deterministic=True)

    def decode(self, data: bytes | memoryview, message_type: type[Any]) -> Any:
        msg = message_type()
        msg.ParseFromString(data)
        return msg


class ProtoJSONCodec:
    """The canonical protobuf JSON mapping (``json``).

    Unknown fields are ignored when decoding, as the Connect protocol expects of
    JSON clients and servers that evolve independently.
    """

    __slots__ = ()

    def name(self) -> str:
        return "json"

    def encode(self, message: Message) -> bytes:
        data = json_format.MessageToDict(message)
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()

    def decode(self, data: bytes | memoryview, message_type: type[Any]) -> Any:
        msg = message_type()
        try:
            text = bytes(data).decode()
        except UnicodeDecodeError as e:
            raise DecodeError(f"invalid UTF-8 in JSON message: {e}") from None
        if not text.strip():
            # An empty body is the empty message, like an empty binary payload.
            return msg
        json_format.Parse(text, msg, ignore_unknown_fields=True)
        return msg


_BINARY = ProtoBinaryCodec()
_JSON = ProtoJSONCodec()


def proto_binary_codec() -> Codec[Any, Any]:
    """The protobuf binary codec."""
    return _BINARY


def proto_json_codec() -> Codec[Any, Any]:
    """The protobuf JSON codec."""
    return _JSON
