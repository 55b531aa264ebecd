"""Between the conformance messages (Header, Error, enums) and connect-anyio's types."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import cast

from connectrpc.conformance.v1 import config_pb2, service_pb2
from google.protobuf import any_pb2

from connect_anyio import Code, ConnectError, Headers


def headers_to_proto(headers: Headers) -> list[service_pb2.Header]:
    """One ``Header`` per name, its values in order (names as the wire had them, lower case)."""
    grouped: dict[str, list[str]] = {}
    for name, value in headers.allitems():
        grouped.setdefault(name, []).append(value)
    return [service_pb2.Header(name=name, value=values) for name, values in grouped.items()]


def add_headers(target: Headers, headers: Iterable[service_pb2.Header]) -> None:
    """Adds every value of every ``Header`` to ``target``, keeping what it has."""
    for header in headers:
        for value in header.value:
            target.add(header.name, value)


def code_from_proto(code: int) -> Code:
    """The runtime's code for a conformance ``Code`` (the numbers are gRPC's)."""
    return Code.from_grpc_number(code) or Code.UNKNOWN


def code_to_proto(code: Code) -> config_pb2.Code:
    """The conformance ``Code`` for a runtime code (the numbers are gRPC's)."""
    return cast("config_pb2.Code", code.grpc_number)


def error_to_proto(error: ConnectError) -> service_pb2.Error:
    """A client-side error as the runner wants it reported."""
    out = service_pb2.Error(code=code_to_proto(error.code), details=list(error.details))
    if error.message:
        out.message = error.message
    return out


def error_from_proto(
    error: service_pb2.Error, extra_details: Sequence[any_pb2.Any] = ()
) -> ConnectError:
    """The error a response definition asks the server to raise, plus ``extra_details``."""
    return ConnectError(
        code_from_proto(error.code), error.message, [*error.details, *extra_details]
    )


def canceled_error() -> service_pb2.Error:
    """What a call cancelled by its caller (a cancel scope) reports: the CANCELED code."""
    return service_pb2.Error(code=config_pb2.CODE_CANCELED, message="canceled by the client")
