"""The EchoService used by the end-to-end tests: each request says how to behave.

The handler records what it saw in an ``Observations`` object the test shares
(same process, same event loop), so a test can wait for "the handler started"
and "the handler was cancelled" as events, never by sleeping.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
from connectanyio.testing.v1 import testing_connect, testing_pb2
from google.protobuf import empty_pb2, wrappers_pb2

from connect_anyio import Code, ConnectError, RequestContext

EchoRequest = testing_pb2.EchoRequest
EchoResponse = testing_pb2.EchoResponse
Ctx = RequestContext[EchoRequest, EchoResponse]


@dataclass
class Observations:
    """What handlers saw, keyed by the request's ``tag``."""

    started: dict[str, anyio.Event] = field(default_factory=lambda: defaultdict(anyio.Event))
    cancelled: dict[str, anyio.Event] = field(default_factory=lambda: defaultdict(anyio.Event))
    finished: dict[str, anyio.Event] = field(default_factory=lambda: defaultdict(anyio.Event))
    request_headers: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    received: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    async def wait_cancelled(self, tag: str) -> None:
        """Waits until the handler for ``tag`` saw its cancellation (a hang fails after 10 s)."""
        with anyio.fail_after(10):
            await self.cancelled[tag].wait()


def _failure(failure: testing_pb2.Failure) -> ConnectError:
    code = Code.from_name(failure.code) or Code.UNKNOWN
    details = [wrappers_pb2.StringValue(value=d) for d in failure.details]
    return ConnectError(code, failure.message, details)


def _response(request: EchoRequest, ctx: Ctx, index: int = 0) -> EchoResponse:
    remaining = ctx.timeout_ms()
    return EchoResponse(
        text=request.text,
        payload=b"x" * request.response_payload_size,
        index=index,
        headers={k: v for k, v in ctx.request_headers().items() if k.startswith("x-test-")},
        timeout_ms=-1 if remaining is None else int(remaining),
    )


def _echo_metadata(ctx: Ctx) -> None:
    """Sends every ``x-test-*`` request header back as a header and as a trailer."""
    for key, value in ctx.request_headers().allitems():
        if key.startswith("x-test-"):
            ctx.response_headers().add(key, value)
            ctx.response_trailers().add(key + "-trailer", value)


class EchoServiceImpl:
    """Implements ``connectanyio.testing.v1.EchoService`` for the tests."""

    def __init__(self, observations: Observations | None = None) -> None:
        self.observations = observations or Observations()

    async def _block_if_asked(self, request: EchoRequest) -> None:
        if not request.wait_for_cancel:
            return
        obs = self.observations
        obs.started[request.tag].set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            obs.cancelled[request.tag].set()
            raise

    async def echo(self, request: EchoRequest, ctx: Ctx) -> EchoResponse:
        self.observations.request_headers[request.tag] = {
            k: ctx.request_headers().getall(k) for k in ctx.request_headers()
        }
        _echo_metadata(ctx)
        await self._block_if_asked(request)
        if request.HasField("fail"):
            raise _failure(request.fail)
        return _response(request, ctx)

    async def echo_post(self, request: EchoRequest, ctx: Ctx) -> EchoResponse:
        return await self.echo(request, ctx)

    async def server_stream(self, request: EchoRequest, ctx: Ctx) -> AsyncIterator[EchoResponse]:
        _echo_metadata(ctx)
        try:
            for i in range(request.response_count):
                yield _response(request, ctx, i)
            await self._block_if_asked(request)
            if request.HasField("fail"):
                raise _failure(request.fail)
        finally:
            self.observations.finished[request.tag].set()

    async def client_stream(self, request: AsyncIterator[EchoRequest], ctx: Ctx) -> EchoResponse:
        _echo_metadata(ctx)
        texts: list[str] = []
        last: EchoRequest | None = None
        async for message in request:
            texts.append(message.text)
            self.observations.received[message.tag].append(message.text)
            last = message
            await self._block_if_asked(message)
            if message.HasField("fail"):
                raise _failure(message.fail)
        response = _response(last or EchoRequest(), ctx)
        response.request_texts.extend(texts)
        return response

    async def bidi(
        self, request: AsyncIterator[EchoRequest], ctx: Ctx
    ) -> AsyncIterator[EchoResponse]:
        _echo_metadata(ctx)
        index = 0
        async for message in request:
            self.observations.received[message.tag].append(message.text)
            await self._block_if_asked(message)
            if message.HasField("fail"):
                raise _failure(message.fail)
            count = max(1, message.response_count)
            for _ in range(count):
                yield _response(message, ctx, index)
                index += 1

    async def nothing(self, request: empty_pb2.Empty, ctx: Any) -> empty_pb2.Empty:
        return empty_pb2.Empty()


def echo_app(
    observations: Observations | None = None, **options: Any
) -> testing_connect.EchoServiceASGIApplication:
    """The ASGI application of a fresh ``EchoServiceImpl``."""
    return testing_connect.EchoServiceASGIApplication(EchoServiceImpl(observations), **options)
