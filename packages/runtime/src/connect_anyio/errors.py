"""The error type of every RPC, on the server and on the client."""

from __future__ import annotations

__all__ = ["ConnectError"]

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

from google.protobuf import any_pb2
from google.protobuf.message import Message

from .code import Code

if TYPE_CHECKING:
    from .request import Headers

M = TypeVar("M", bound=Message)


def _pack(detail: Message) -> any_pb2.Any:
    if isinstance(detail, any_pb2.Any):
        return detail
    packed = any_pb2.Any()
    packed.Pack(detail)
    return packed


class ConnectError(Exception):
    """An RPC error: a code, a message and optional typed details.

    A handler that raises it sends exactly this code, message and details to the
    client, whichever protocol is in use; the client raises a ``ConnectError`` with
    the same content. Failures on the client side (timeouts, network errors,
    protocol violations) surface as ``ConnectError`` too, with the matching code.

    Details are protobuf messages; they travel as ``google.protobuf.Any``, and
    ``details`` returns them in that form. Use ``unpack_details`` to get the
    messages of one type back.
    """

    def __init__(
        self,
        code: Code,
        message: str = "",
        details: Iterable[Message] = (),
        *,
        metadata: Headers | None = None,
    ) -> None:
        super().__init__(message or code.value)
        self._code = code
        self._message = message
        self._details = [_pack(d) for d in details]
        self._metadata = metadata

    @property
    def code(self) -> Code:
        """The error code."""
        return self._code

    @property
    def message(self) -> str:
        """The error message; may be empty."""
        return self._message

    @property
    def details(self) -> Sequence[any_pb2.Any]:
        """The error details, each packed in a ``google.protobuf.Any``."""
        return self._details

    @property
    def metadata(self) -> Headers:
        """Headers and trailers that came with the error (client side).

        On the server, headers and trailers set on the request context are sent
        with the error instead.
        """
        if self._metadata is None:
            from .request import Headers

            self._metadata = Headers()
        return self._metadata

    def unpack_details(self, message_type: type[M]) -> list[M]:
        """The details that hold a ``message_type``, unpacked."""
        out: list[M] = []
        for detail in self._details:
            if detail.TypeName() == message_type.DESCRIPTOR.full_name:
                msg = message_type()
                detail.Unpack(msg)
                out.append(msg)
        return out

    def __repr__(self) -> str:
        return f"ConnectError({self._code!r}, {self._message!r}, details={len(self._details)})"
