"""``ServerLimits`` on real connections: max_connections, header_timeout (slowloris in its
forms, and a stalled TLS handshake), idle_timeout for HTTP/1.1 keep-alive and HTTP/2.

Limits are small (fractions of a second) so the tests are quick; each test waits for the
server to act with a generous ``fail_after``, never measuring how long it took. Where
two timeouts could explain a close, the other one is set far beyond the test's wait, so
only the limit under test can have done it.
"""

from __future__ import annotations

import json

import anyio
import h2.events
import pytest
from _support.tls import TLSFiles
from native._helpers import (
    SERVICE,
    WAIT,
    GatedEcho,
    RawH1,
    gated_app,
    native,
    raw_h1,
    raw_h2,
    request_head,
    track_connections,
)

from connect_anyio import ServerLimits

pytestmark = pytest.mark.anyio

ECHO = SERVICE + "/EchoPost"
FAR = 3600.0
"""A timeout that cannot fire during a test."""


def unary(text: str, **fields: object) -> bytes:
    body = json.dumps({"text": text, **fields}).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    return request_head("POST", ECHO, headers) + body


async def ask(conn: RawH1, text: str) -> None:
    await conn.send(unary(text))
    conn.expect()
    response = await conn.response()
    assert response.status == 200
    assert response.json["text"] == text


async def nothing_arrives(conn: RawH1) -> bool:
    """True if no byte is readable now (the server has not answered)."""
    with anyio.move_on_after(0.1):
        await conn.stream.receive()
        return False
    return True


async def test_max_connections_makes_the_next_connection_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tracked = track_connections(monkeypatch)
    limits = ServerLimits(max_connections=2, idle_timeout=FAR, graceful_timeout=0.5)
    async with (
        native(gated_app(GatedEcho()), limits=limits) as srv,
        raw_h1(srv.port) as first,
        raw_h1(srv.port) as second,
    ):
        await ask(first, "one")
        await ask(second, "two")
        async with raw_h1(srv.port) as third:
            await third.send(unary("three"))  # the kernel accepts it; the server does not
            # The first two are served meanwhile, the third is not even accepted.
            await ask(first, "one again")
            await ask(second, "two again")
            assert len(tracked.h1) == 2
            assert await nothing_arrives(third)
            await first.aclose()  # a slot frees up: the third is served now
            third.expect()
            response = await third.response()
            assert response.status == 200
            assert response.json["text"] == "three"
            assert len(tracked.h1) == 3


async def test_max_connections_slot_is_freed_by_a_slowloris_timeout() -> None:
    limits = ServerLimits(max_connections=1, header_timeout=0.2, graceful_timeout=0.5)
    async with (
        native(gated_app(GatedEcho()), limits=limits) as srv,
        raw_h1(srv.port) as stalled,
        raw_h1(srv.port) as waiting,
    ):
        await stalled.send(b"POST / HTTP/1.1\r\nHost: x\r\n")
        await waiting.send(unary("served after the slowloris"))
        await stalled.closed()
        waiting.expect()
        response = await waiting.response()
        assert response.json["text"] == "served after the slowloris"


@pytest.mark.parametrize(
    "sent",
    [b"", b"POST / HTTP/1.1\r\nHost: x\r\n", b"PRI * HTTP/2.0\r\n", b"GET"],
    ids=["nothing", "partial-head", "partial-h2-preface", "partial-request-line"],
)
async def test_header_timeout_disconnects_a_stalled_client(sent: bytes) -> None:
    limits = ServerLimits(header_timeout=0.2, idle_timeout=FAR, graceful_timeout=0.5)
    async with native(gated_app(GatedEcho()), limits=limits) as srv:
        async with raw_h1(srv.port) as conn:
            if sent:
                await conn.send(sent)
            received = await conn.closed()
            # Closed without an answer, or with a 408 at most.
            assert received == b"" or received.startswith(b"HTTP/1.1 408"), received
        async with raw_h1(srv.port) as conn:
            await ask(conn, "the server is fine")


async def test_header_timeout_cuts_off_a_head_that_trickles_in() -> None:
    """Every byte arrives before a per-read timeout would fire; the head never completes."""
    limits = ServerLimits(header_timeout=0.3, idle_timeout=FAR, graceful_timeout=0.5)
    async with native(gated_app(GatedEcho()), limits=limits) as srv, raw_h1(srv.port) as conn:
        await conn.send(b"POST / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        async with anyio.create_task_group() as tg:

            async def trickle() -> None:
                try:
                    while True:
                        await conn.send(b"a")
                        await anyio.sleep(0.02)  # the attacker's pace, not a synchronization
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    pass

            tg.start_soon(trickle)
            await conn.closed()
            tg.cancel_scope.cancel()


async def test_header_timeout_applies_to_each_request_on_a_keep_alive_connection() -> None:
    limits = ServerLimits(header_timeout=0.2, idle_timeout=FAR, graceful_timeout=0.5)
    async with native(gated_app(GatedEcho()), limits=limits) as srv, raw_h1(srv.port) as conn:
        await ask(conn, "first")
        await conn.send(b"POST " + ECHO.encode() + b" HTTP/1.1\r\nHost: x\r\n")  # and stall
        assert await conn.closed() == b""


async def test_header_timeout_covers_the_tls_handshake(tls_files: TLSFiles) -> None:
    limits = ServerLimits(header_timeout=0.2, idle_timeout=FAR, graceful_timeout=0.5)
    async with native(gated_app(GatedEcho()), ssl=tls_files.server_context(), limits=limits) as srv:
        for sent in (b"", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"):  # a ClientHello's start
            async with await anyio.connect_tcp("127.0.0.1", srv.port) as tcp:
                if sent:
                    await tcp.send(sent)
                with anyio.fail_after(WAIT):
                    while True:
                        try:
                            data = await tcp.receive()
                        except (anyio.EndOfStream, anyio.BrokenResourceError):
                            break
                        assert data  # (anything but a completed handshake is fine)
        # A real client still gets through.
        async with raw_h1(srv.port, tls=tls_files.client_context()) as conn:
            await ask(conn, "over tls")


async def test_idle_keep_alive_connection_is_closed() -> None:
    limits = ServerLimits(idle_timeout=0.2, header_timeout=FAR, graceful_timeout=0.5)
    async with native(gated_app(GatedEcho()), limits=limits) as srv, raw_h1(srv.port) as conn:
        await ask(conn, "then nothing")
        assert await conn.closed() == b""


async def test_idle_timeout_does_not_cut_a_request_in_progress() -> None:
    service = GatedEcho()
    limits = ServerLimits(idle_timeout=0.1, header_timeout=FAR, graceful_timeout=0.5)
    async with native(gated_app(service), limits=limits) as srv:
        async with raw_h1(srv.port) as conn:
            await conn.send(unary("slow", tag="slow", waitForCancel=True))
            with anyio.fail_after(WAIT):
                await service.observations.started["slow"].wait()
            # Quiet for several idle periods while the handler works: that is not idleness.
            await anyio.sleep(0.3)
            assert not service.observations.cancelled["slow"].is_set()
            service.release("slow")
            conn.expect()
            response = await conn.response()
            assert response.json["text"] == "slow"
        async with raw_h2(srv.port) as client:
            stream_id = client.request(
                ECHO, json.dumps({"tag": "h2", "waitForCancel": True}).encode()
            )
            await client.flush()
            with anyio.fail_after(WAIT):
                await service.observations.started["h2"].wait()
            await anyio.sleep(0.3)
            assert not service.observations.cancelled["h2"].is_set()
            service.release("h2")
            await client.wait_ended(stream_id)
            assert client.status(stream_id) == 200
            assert not any(isinstance(e, h2.events.ConnectionTerminated) for e in client.events)


async def test_idle_http2_connection_gets_goaway_and_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tracked = track_connections(monkeypatch)
    limits = ServerLimits(idle_timeout=0.2, header_timeout=FAR, graceful_timeout=0.5)
    async with native(gated_app(GatedEcho()), limits=limits) as srv:
        for requests in (0, 1):
            async with raw_h2(srv.port) as client:
                if requests:
                    stream_id = client.request(ECHO, b'{"text": "one"}')
                    await client.flush()
                    await client.wait_ended(stream_id)
                    assert client.status(stream_id) == 200
                goaway = await client.wait_for(
                    lambda e: isinstance(e, h2.events.ConnectionTerminated)
                )
                assert goaway.error_code == 0
                await client.wait_closed()
    assert len(tracked.h2) == 2
