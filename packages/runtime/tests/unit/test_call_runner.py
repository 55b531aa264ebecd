"""The call runner (``_server_core``) through fake ASGI callables, in process.

What the end-to-end tests cannot pin down on a real server: a handler that never
waits gets no disconnect watcher at all; one that waits gets it and is cancelled
when the client leaves; our own cancellation (deadline, client gone) never
abandons an ASGI ``send`` halfway, except one stuck past the grace period.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import anyio
import pytest
from _support.service import EchoRequest, EchoResponse, Observations, echo_app

from connect_anyio import (
    Code,
    ConnectASGIApplication,
    ConnectError,
    Endpoint,
    RequestContext,
    _server_core,
)
from connect_anyio._envelope import FLAG_CONNECT_END_STREAM, EnvelopeDecoder, encode_envelope
from connect_anyio._server_core import _drive
from connect_anyio.method import MethodInfo, StreamType

pytestmark = pytest.mark.anyio

Message = MutableMapping[str, Any]
SERVICE = "/connectanyio.testing.v1.EchoService/"


# -- _drive ---------------------------------------------------------------------


class Hook:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


async def test_drive_without_suspension_returns_and_never_calls_the_hook() -> None:
    async def quick() -> int:
        return 7

    hook = Hook()
    assert await _drive(quick(), hook) == 7
    assert hook.calls == 0


async def test_drive_calls_the_hook_once_at_the_first_suspension() -> None:
    async def slow() -> str:
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        return "done"

    hook = Hook()
    assert await _drive(slow(), hook) == "done"
    assert hook.calls == 1


async def test_drive_passes_exceptions_and_cancellation_through() -> None:
    class Boom(Exception):
        pass

    async def fails_later() -> None:
        await anyio.lowlevel.checkpoint()
        raise Boom

    with pytest.raises(Boom):
        await _drive(fails_later(), Hook())

    cancelled = anyio.Event()

    async def waits() -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise

    hook = Hook()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                await _drive(waits(), hook)
                raise AssertionError("not cancelled")

            tg.start_soon(run)
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
    assert cancelled.is_set()
    assert hook.calls == 1


# -- a fake ASGI server ------------------------------------------------------------


class FakeASGI:
    """One request: its body, then whatever the test feeds (``disconnect``)."""

    def __init__(self, path: str, body: bytes, headers: dict[str, str]) -> None:
        self.scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": SERVICE + path,
            "raw_path": (SERVICE + path).encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 8000),
        }
        self.body = body
        self.receives = 0
        self.sent: list[Message] = []
        self.gone = anyio.Event()
        self.send_hook: Callable[[Message], Awaitable[None]] | None = None

    async def receive(self) -> Message:
        self.receives += 1
        if self.receives == 1:
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.send_hook is not None:
            await self.send_hook(message)
        self.sent.append(message)

    async def run(self, app: Any) -> None:
        with anyio.fail_after(10):
            await app(self.scope, self.receive, self.send)

    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.sent if m["type"] == "http.response.body"]


def _unary(request: EchoRequest) -> FakeASGI:
    return FakeASGI("EchoPost", request.SerializeToString(), {"content-type": "application/proto"})


def _stream(request: EchoRequest, **headers: str) -> FakeASGI:
    return FakeASGI(
        "ServerStream",
        encode_envelope(0, request.SerializeToString()),
        {"content-type": "application/connect+proto", **headers},
    )


def _envelopes(fake: FakeASGI) -> list[tuple[int, bytes]]:
    decoder = EnvelopeDecoder()
    out = []
    for body in fake.bodies():
        out += [(flags, bytes(data)) for flags, data in decoder.feed(body)]
    return out


# -- the disconnect watcher ------------------------------------------------------


async def test_a_handler_that_never_waits_gets_no_watcher() -> None:
    fake = _unary(EchoRequest(text="hi"))
    await fake.run(echo_app())
    assert fake.receives == 1  # the body, and nothing watching for a disconnect
    assert fake.sent[0]["status"] == 200
    assert EchoResponse.FromString(fake.bodies()[0]).text == "hi"


async def test_a_handler_that_waits_is_cancelled_when_the_client_leaves() -> None:
    obs = Observations()
    fake = _unary(EchoRequest(tag="w", wait_for_cancel=True))
    async with anyio.create_task_group() as tg:
        tg.start_soon(fake.run, echo_app(obs))
        with anyio.fail_after(10):
            await obs.started["w"].wait()
        fake.gone.set()
        await obs.wait_cancelled("w")
    assert fake.receives == 2
    assert fake.sent == []


async def _answer_later(request: EchoRequest, ctx: RequestContext[Any, Any]) -> EchoResponse:
    await anyio.lowlevel.checkpoint()
    return EchoResponse(text=request.text)


async def test_a_handler_that_waits_and_answers_stops_its_watcher() -> None:
    method = MethodInfo(
        name="EchoPost",
        service_name="connectanyio.testing.v1.EchoService",
        input=EchoRequest,
        output=EchoResponse,
    )
    app: ConnectASGIApplication[None] = ConnectASGIApplication(
        service=None,
        endpoints=lambda _: {
            method.procedure: Endpoint.unary(method=method, function=_answer_later)
        },
    )
    fake = _unary(EchoRequest(text="later"))
    await fake.run(app)
    assert fake.receives == 2  # the watcher ran, and was stopped with the call
    assert EchoResponse.FromString(fake.bodies()[0]).text == "later"


# -- sends are never abandoned halfway ---------------------------------------------


async def test_a_send_in_flight_when_the_client_leaves_completes_then_the_handler_stops() -> None:
    obs = Observations()
    fake = _stream(EchoRequest(tag="s", response_count=2, wait_for_cancel=True))
    release = anyio.Event()
    completed: list[bool] = []

    async def slow_second_message(message: Message) -> None:
        if message["type"] == "http.response.body" and len(fake.bodies()) == 1:
            fake.gone.set()  # the client leaves while this send is in flight
            await release.wait()
            completed.append(True)

    fake.send_hook = slow_second_message
    async with anyio.create_task_group() as tg:
        tg.start_soon(fake.run, echo_app(obs))
        await anyio.wait_all_tasks_blocked()
        assert fake.receives == 2  # the watcher saw the disconnect
        assert not obs.started["s"].is_set()
        release.set()
    assert completed == [True]
    # The handler went on to wait after its second message, and was cancelled there;
    # the end of the stream never went out.
    assert obs.cancelled["s"].is_set()
    assert [flags for flags, _ in _envelopes(fake)] == [0, 0]


async def test_a_send_stuck_past_the_grace_period_is_abandoned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_server_core, "SEND_GRACE_SECONDS", 0.05)
    obs = Observations()
    fake = _stream(EchoRequest(tag="g", response_count=3))
    abandoned = anyio.Event()

    async def stuck_second_message(message: Message) -> None:
        if message["type"] == "http.response.body" and len(fake.bodies()) == 1:
            fake.gone.set()
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                abandoned.set()
                raise

    fake.send_hook = stuck_second_message
    await fake.run(echo_app(obs))
    assert abandoned.is_set()
    assert len(fake.bodies()) == 1
    assert obs.finished["g"].is_set()


async def _two_messages(
    request: EchoRequest, ctx: RequestContext[Any, Any]
) -> AsyncIterator[EchoResponse]:
    yield EchoResponse(index=0)
    yield EchoResponse(index=1)
    await anyio.sleep_forever()


async def test_a_send_in_flight_at_the_deadline_completes_then_the_stream_ends_with_it() -> None:
    method = MethodInfo(
        name="ServerStream",
        service_name="connectanyio.testing.v1.EchoService",
        input=EchoRequest,
        output=EchoResponse,
        stream_type=StreamType.SERVER_STREAM,
    )
    app: ConnectASGIApplication[None] = ConnectASGIApplication(
        service=None,
        endpoints=lambda _: {
            method.procedure: Endpoint.server_stream(method=method, function=_two_messages)
        },
    )
    fake = _stream(EchoRequest(), **{"connect-timeout-ms": "20"})
    completed: list[bool] = []

    async def slow_second_message(message: Message) -> None:
        if message["type"] == "http.response.body" and len(fake.bodies()) == 1:
            # Longer than the whole call may take: the deadline passes meanwhile.
            await anyio.sleep(0.2)
            completed.append(True)

    fake.send_hook = slow_second_message
    await fake.run(app)
    assert completed == [True]
    envelopes = _envelopes(fake)
    assert [flags for flags, _ in envelopes] == [0, 0, FLAG_CONNECT_END_STREAM]
    end = json.loads(envelopes[-1][1])
    assert end["error"]["code"] == "deadline_exceeded"


# -- handlers that never wait ------------------------------------------------------


class _Service:
    async def plain(self, request: Any, ctx: Any) -> Any:
        return request

    async def awaits(self, request: Any, ctx: Any) -> Any:
        return await self.plain(request, ctx)

    async def iterates(self, request: Any, ctx: Any) -> Any:
        async for _ in request:
            pass

    async def enters(self, request: Any, ctx: Any) -> Any:
        async with request:
            pass

    async def comprehends(self, request: Any, ctx: Any) -> Any:
        return [x async for x in request]

    async def nests(self, request: Any, ctx: Any) -> Any:
        async def inner() -> None:
            await anyio.lowlevel.checkpoint()

        return inner

    def sync(self, request: Any, ctx: Any) -> Any:
        return request


def test_never_waits_only_for_async_code_without_suspension_points() -> None:
    service = _Service()
    assert _server_core.never_waits(service.plain)
    assert _server_core.never_waits(_Service.plain)
    for fn in (
        service.awaits,
        service.iterates,
        service.enters,
        service.comprehends,
        service.nests,
        service.sync,
        functools.partial(service.plain),
        lambda request, ctx: service.plain(request, ctx),
    ):
        assert not _server_core.never_waits(fn), fn


def _inline_app(handler: Callable[..., Awaitable[EchoResponse]]) -> ConnectASGIApplication[None]:
    method = MethodInfo(
        name="EchoPost",
        service_name="connectanyio.testing.v1.EchoService",
        input=EchoRequest,
        output=EchoResponse,
    )
    app: ConnectASGIApplication[None] = ConnectASGIApplication(
        service=None,
        endpoints=lambda _: {method.procedure: Endpoint.unary(method=method, function=handler)},
    )
    assert app.router.routes[method.procedure].never_waits
    return app


async def _echo_now(request: EchoRequest, ctx: RequestContext[Any, Any]) -> EchoResponse:
    ctx.response_headers()["x-seen"] = request.text
    return EchoResponse(text=request.text)


async def _fail_now(request: EchoRequest, ctx: RequestContext[Any, Any]) -> EchoResponse:
    raise ConnectError(Code.FAILED_PRECONDITION, "no")


async def test_a_handler_without_await_runs_inline_and_answers() -> None:
    fake = _unary(EchoRequest(text="inline"))
    await fake.run(_inline_app(_echo_now))
    assert fake.receives == 1
    start = fake.sent[0]
    assert start["status"] == 200
    assert (b"x-seen", b"inline") in start["headers"]
    assert EchoResponse.FromString(fake.bodies()[0]).text == "inline"

    fake = _unary(EchoRequest(text="inline"))
    await fake.run(_inline_app(_fail_now))
    assert fake.sent[0]["status"] == 400
    assert json.loads(fake.bodies()[0])["code"] == "failed_precondition"


async def test_a_handler_without_await_still_has_a_deadline_for_its_body() -> None:
    fake = _unary(EchoRequest(text="slow"))
    fake.scope["headers"].append((b"connect-timeout-ms", b"20"))
    half = fake.body[:3]

    async def receive() -> Message:
        fake.receives += 1
        if fake.receives == 1:
            return {"type": "http.request", "body": half, "more_body": True}
        await anyio.sleep_forever()  # the rest of the body never comes
        raise AssertionError

    with anyio.fail_after(10):
        await _inline_app(_echo_now)(fake.scope, receive, fake.send)
    assert fake.sent[0]["status"] == 504
    assert json.loads(fake.bodies()[0])["code"] == "deadline_exceeded"
