"""ConformanceService as the server under test implements it (see the runner's
``docs/testing_servers.md``): every RPC echoes what it received and answers as its
response definition scripts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

import anyio
from connectrpc.conformance.v1 import service_pb2
from connectrpc.conformance.v1.service_connect import ConformanceService
from google.protobuf import any_pb2
from google.protobuf.message import Message

from connect_anyio import RequestContext

from ._convert import add_headers, error_from_proto, headers_to_proto

RequestInfo = service_pb2.ConformancePayload.RequestInfo


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def request_info(ctx: RequestContext[Any, Any], requests: list[any_pb2.Any]) -> RequestInfo:
    """What the server observed: headers, the remaining timeout, the requests, GET's query."""
    info = RequestInfo(request_headers=headers_to_proto(ctx.request_headers()), requests=requests)
    timeout = ctx.timeout_ms()
    if timeout is not None:
        info.timeout_ms = int(timeout)
    query = _query(ctx)
    if query:
        params: dict[str, list[str]] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            params.setdefault(name, []).append(value)
        info.connect_get_info.query_params.extend(
            service_pb2.Header(name=name, value=values) for name, values in params.items()
        )
    return info


def _query(ctx: RequestContext[Any, Any]) -> str:
    """The request URL's query string (a Connect GET carries the request in it)."""
    query = getattr(ctx, "query", None)
    return query() if callable(query) else ""


def _unary_definition(
    request: service_pb2.UnaryRequest | service_pb2.IdempotentUnaryRequest,
) -> service_pb2.UnaryResponseDefinition | None:
    return request.response_definition if request.HasField("response_definition") else None


def _set_metadata(
    ctx: RequestContext[Any, Any],
    definition: service_pb2.UnaryResponseDefinition | service_pb2.StreamResponseDefinition,
) -> None:
    add_headers(ctx.response_headers(), definition.response_headers)
    add_headers(ctx.response_trailers(), definition.response_trailers)


async def _unary_payload(
    ctx: RequestContext[Any, Any],
    definition: service_pb2.UnaryResponseDefinition | None,
    requests: list[any_pb2.Any],
) -> service_pb2.ConformancePayload:
    """The payload a unary or client-stream call answers with; raises the scripted error."""
    info = request_info(ctx, requests)
    if definition is None:
        return service_pb2.ConformancePayload(request_info=info)
    _set_metadata(ctx, definition)
    if definition.response_delay_ms:
        await anyio.sleep(definition.response_delay_ms / 1000)
    if definition.WhichOneof("response") == "error":
        raise error_from_proto(definition.error, [_pack(info)])
    return service_pb2.ConformancePayload(data=definition.response_data, request_info=info)


class ConformanceServer(ConformanceService):
    """The service under test. ``Unimplemented`` keeps the generated default: UNIMPLEMENTED."""

    async def unary(
        self,
        request: service_pb2.UnaryRequest,
        ctx: RequestContext[service_pb2.UnaryRequest, service_pb2.UnaryResponse],
    ) -> service_pb2.UnaryResponse:
        definition = (
            request.response_definition if request.HasField("response_definition") else None
        )
        payload = await _unary_payload(ctx, definition, [_pack(request)])
        return service_pb2.UnaryResponse(payload=payload)

    async def idempotent_unary(
        self,
        request: service_pb2.IdempotentUnaryRequest,
        ctx: RequestContext[
            service_pb2.IdempotentUnaryRequest, service_pb2.IdempotentUnaryResponse
        ],
    ) -> service_pb2.IdempotentUnaryResponse:
        definition = (
            request.response_definition if request.HasField("response_definition") else None
        )
        payload = await _unary_payload(ctx, definition, [_pack(request)])
        return service_pb2.IdempotentUnaryResponse(payload=payload)

    async def client_stream(
        self,
        request: AsyncIterator[service_pb2.ClientStreamRequest],
        ctx: RequestContext[service_pb2.ClientStreamRequest, service_pb2.ClientStreamResponse],
    ) -> service_pb2.ClientStreamResponse:
        definition: service_pb2.UnaryResponseDefinition | None = None
        received: list[any_pb2.Any] = []
        async for message in request:
            if not received and message.HasField("response_definition"):
                definition = message.response_definition
            received.append(_pack(message))
        payload = await _unary_payload(ctx, definition, received)
        return service_pb2.ClientStreamResponse(payload=payload)

    async def server_stream(
        self,
        request: service_pb2.ServerStreamRequest,
        ctx: RequestContext[service_pb2.ServerStreamRequest, service_pb2.ServerStreamResponse],
    ) -> AsyncIterator[service_pb2.ServerStreamResponse]:
        if not request.HasField("response_definition"):
            return
        definition = request.response_definition
        _set_metadata(ctx, definition)
        requests = [_pack(request)]
        sent = 0
        for data in definition.response_data:
            payload = service_pb2.ConformancePayload(data=data)
            if sent == 0:
                payload.request_info.CopyFrom(request_info(ctx, requests))
            if definition.response_delay_ms:
                await anyio.sleep(definition.response_delay_ms / 1000)
            yield service_pb2.ServerStreamResponse(payload=payload)
            sent += 1
        if definition.HasField("error"):
            extra = [] if sent else [_pack(request_info(ctx, requests))]
            raise error_from_proto(definition.error, extra)

    async def bidi_stream(
        self,
        request: AsyncIterator[service_pb2.BidiStreamRequest],
        ctx: RequestContext[service_pb2.BidiStreamRequest, service_pb2.BidiStreamResponse],
    ) -> AsyncIterator[service_pb2.BidiStreamResponse]:
        definition: service_pb2.StreamResponseDefinition | None = None
        full_duplex = False
        first = True
        sent = 0
        received: list[any_pb2.Any] = []
        async for message in request:
            received.append(_pack(message))
            if first:
                first = False
                full_duplex = message.full_duplex
                if message.HasField("response_definition"):
                    definition = message.response_definition
                    _set_metadata(ctx, definition)
            if not full_duplex:
                continue
            if definition is None or sent >= len(definition.response_data):
                # Nothing left to answer with: stop reading and end with the scripted error.
                break
            payload = service_pb2.ConformancePayload(data=definition.response_data[sent])
            if sent == 0:
                payload.request_info.CopyFrom(request_info(ctx, received))
            else:
                payload.request_info.requests.extend(received)
            if definition.response_delay_ms:
                await anyio.sleep(definition.response_delay_ms / 1000)
            yield service_pb2.BidiStreamResponse(payload=payload)
            sent += 1
            received = []
        if definition is None:
            return
        # Half duplex: every response now; full duplex: whatever the requests did not use up.
        for data in definition.response_data[sent:]:
            payload = service_pb2.ConformancePayload(data=data)
            if sent == 0:
                payload.request_info.CopyFrom(request_info(ctx, received))
            if definition.response_delay_ms:
                await anyio.sleep(definition.response_delay_ms / 1000)
            yield service_pb2.BidiStreamResponse(payload=payload)
            sent += 1
        if definition.HasField("error"):
            extra = [] if sent else [_pack(request_info(ctx, received))]
            raise error_from_proto(definition.error, extra)
