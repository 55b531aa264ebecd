"""The native server's HTTP/1.1, byte by byte: keep-alive, chunked bodies both ways,
``Expect: 100-continue``, pipelining, and bad or oversize request heads.

Requests are written by hand on a raw socket; h11 (as a client) reads the answers.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import h11
import pytest
from native._helpers import (
    SERVICE,
    GatedEcho,
    RawH1,
    chunked,
    envelope,
    gated_app,
    native,
    raw_h1,
    request_head,
    track_connections,
    unenvelope,
)

from connect_anyio import ServerLimits

pytestmark = pytest.mark.anyio

ECHO = SERVICE + "/EchoPost"
STREAM = SERVICE + "/ServerStream"
CLIENT_STREAM = SERVICE + "/ClientStream"
JSON = [("Content-Type", "application/json")]
LIMITS = ServerLimits(graceful_timeout=0.5)


def unary(text: str, *, extra: list[tuple[str, str]] | None = None) -> bytes:
    body = json.dumps({"text": text}).encode()
    headers = [*JSON, ("Content-Length", str(len(body))), *(extra or [])]
    return request_head("POST", ECHO, headers) + body


async def ask(conn: RawH1, text: str) -> None:
    await conn.send(unary(text))
    conn.expect()
    response = await conn.response()
    assert response.status == 200, response
    assert response.json["text"] == text


async def test_keep_alive_serves_requests_one_after_another_on_one_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tracked = track_connections(monkeypatch)
    async with native(gated_app(GatedEcho()), limits=LIMITS) as srv, raw_h1(srv.port) as conn:
        for i in range(5):
            await ask(conn, f"request {i}")
        assert len(tracked.h1) == 1
        assert not tracked.h2


async def test_chunked_request_bodies() -> None:
    async with native(gated_app(GatedEcho()), limits=LIMITS) as srv, raw_h1(srv.port) as conn:
        # A unary JSON body cut at odd places.
        body = json.dumps({"text": "in pieces"}).encode()
        head = request_head("POST", ECHO, [*JSON, ("Transfer-Encoding", "chunked")])
        await conn.send(head + chunked(body[:3], body[3:4], body[4:]))
        conn.expect()
        response = await conn.response()
        assert response.status == 200
        assert response.json["text"] == "in pieces"

        # A client stream: envelopes split across chunks, on the same connection.
        stream = envelope({"text": "one"}) + envelope({"text": "two"}) + envelope({"text": "3"})
        head = request_head(
            "POST",
            CLIENT_STREAM,
            [("Content-Type", "application/connect+json"), ("Transfer-Encoding", "chunked")],
        )
        pieces = [stream[i : i + 7] for i in range(0, len(stream), 7)]
        await conn.send(head)
        for piece in pieces:
            await conn.send(chunked(piece)[: -len(b"0\r\n\r\n")])
        await conn.send(b"0\r\n\r\n")
        conn.expect()
        response = await conn.response()
        assert response.status == 200
        frames = unenvelope(response.body)
        assert frames[0][0] == 0
        assert json.loads(frames[0][1])["requestTexts"] == ["one", "two", "3"]
        assert frames[-1][0] == 2  # end of stream
        assert json.loads(frames[-1][1]) == {}


async def test_streaming_response_is_chunked_and_flushed_as_it_goes() -> None:
    service = GatedEcho()
    async with native(gated_app(service), limits=LIMITS) as srv, raw_h1(srv.port) as conn:
        head = request_head(
            "POST",
            STREAM,
            [("Content-Type", "application/connect+json"), ("Transfer-Encoding", "chunked")],
        )
        message = {"text": "s", "responseCount": 2, "waitForCancel": True, "tag": "stream"}
        await conn.send(head + chunked(envelope(message)))
        conn.expect()
        response, _ = await conn.head()
        assert response.status_code == 200
        headers = {k.lower(): v for k, v in response.headers}
        assert headers[b"transfer-encoding"] == b"chunked"
        assert b"content-length" not in headers
        # Both messages arrive while the handler is still running (blocked on its gate).
        received = b""
        while len(unenvelope_prefix(received)) < 2:
            piece = await conn.chunk()
            assert piece is not None
            received += piece
        assert [
            json.loads(m)["index"] if b"index" in m else 0 for _, m in unenvelope(received)
        ] == [
            0,
            1,
        ]
        assert service.active == 1
        service.release("stream")
        rest = b""
        while (piece := await conn.chunk()) is not None:
            rest += piece
        assert unenvelope(rest) == [(2, b"{}")]
        # The connection is still good for another request.
        await ask(conn, "after the stream")


def unenvelope_prefix(data: bytes) -> list[bytes]:
    """The complete envelopes at the start of ``data``."""
    out = []
    while len(data) >= 5:
        size = int.from_bytes(data[1:5], "big")
        if len(data) < 5 + size:
            break
        out.append(data[5 : 5 + size])
        data = data[5 + size :]
    return out


async def test_expect_100_continue_is_answered_before_the_body_is_read() -> None:
    async with native(gated_app(GatedEcho()), limits=LIMITS) as srv, raw_h1(srv.port) as conn:
        body = json.dumps({"text": "continued"}).encode()
        head = request_head(
            "POST", ECHO, [*JSON, ("Content-Length", str(len(body))), ("Expect", "100-continue")]
        )
        await conn.send(head)
        conn.expect()
        # Nothing of the body is sent until the server says 100 Continue.
        with anyio.fail_after(10):
            event = await conn._event()
        assert isinstance(event, h11.InformationalResponse)
        assert event.status_code == 100
        await conn.send(body)
        response = await conn.response()
        assert response.status == 200
        assert response.json["text"] == "continued"
        await ask(conn, "kept alive")


@pytest.mark.parametrize(
    ("target", "content_type", "status"),
    [
        (ECHO, "text/plain", 415),  # refused by content type, before any body is read
        ("/no.such.Service/Method", "application/json", 404),
    ],
    ids=["unsupported-media-type", "not-found"],
)
async def test_expect_100_continue_refused_early_needs_no_body(
    target: str, content_type: str, status: int
) -> None:
    async with native(gated_app(GatedEcho()), limits=LIMITS) as srv, raw_h1(srv.port) as conn:
        head = request_head(
            "POST",
            target,
            [
                ("Content-Type", content_type),
                ("Content-Length", "100000"),
                ("Expect", "100-continue"),
            ],
        )
        await conn.send(head)  # and never the body
        conn.expect()
        response = await conn.response()
        assert response.status == status
        assert response.informational == []  # no 100 Continue: the client keeps its body
        # The server cannot know whether the body follows: it closes the connection.
        assert response.headers.get(b"connection") == b"close"
        assert await conn.closed() == b""


async def test_pipelined_requests_are_answered_in_order() -> None:
    service = GatedEcho()
    async with native(gated_app(service), limits=LIMITS) as srv, raw_h1(srv.port) as conn:
        # Both written before reading anything: the first blocks in its handler.
        blocked = json.dumps({"text": "first", "waitForCancel": True, "tag": "p1"}).encode()
        first = request_head("POST", ECHO, [*JSON, ("Content-Length", str(len(blocked)))])
        await conn.send(first + blocked + unary("second") + unary("third"))
        with anyio.fail_after(10):
            await service.observations.started["p1"].wait()
        # The later requests wait for the first; they are not answered out of order.
        assert service.calls == 1
        service.release("p1")
        for text in ("first", "second", "third"):
            conn.expect()
            response = await conn.response()
            assert response.status == 200
            assert response.json["text"] == text
        assert service.calls == 3


async def test_pipelined_request_behind_a_streaming_response() -> None:
    async with native(gated_app(GatedEcho()), limits=LIMITS) as srv, raw_h1(srv.port) as conn:
        head = request_head(
            "POST", STREAM, [("Content-Type", "application/connect+json"), ("Content-Length", "")]
        )
        message = envelope({"text": "s", "responseCount": 3})
        head = head.replace(b"Content-Length: \r\n", f"Content-Length: {len(message)}\r\n".encode())
        await conn.send(head + message + unary("next"))
        conn.expect()
        response = await conn.response()
        assert [flags for flags, _ in unenvelope(response.body)] == [0, 0, 0, 2]
        conn.expect()
        response = await conn.response()
        assert response.json["text"] == "next"


MALFORMED = {
    "request-line": (b"GARBAGE\r\n\r\n", 400),
    "version": (b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400),
    "header-line": (b"POST / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400),
    "length": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n", 400),
    "header-name": (b"POST / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", 400),
    "host": (b"GET / HTTP/1.1\r\n\r\n", 400),
    # A transfer coding the server cannot decode: not implemented.
    "encoding": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    "encoding-after-chunked": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        501,
    ),
    # Framing two readers could disagree on (request smuggling): refused.
    "length-and-chunked": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
    ),
    "two-lengths": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        400,
    ),
    "chunked-in-http1.0": (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    "bare-lf": (b"GET / HTTP/1.1\nHost: x\n\n", 400),
    "obs-fold": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n", 400),
    "two-hosts": (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    "nul-in-value": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
    "http2-version": (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
}


@pytest.mark.parametrize(("raw", "status"), MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_request_gets_400_and_the_connection_closes(
    raw: bytes, status: int
) -> None:
    async with native(gated_app(GatedEcho()), limits=LIMITS) as srv:
        async with raw_h1(srv.port) as conn:
            await conn.send(raw)
            conn.expect()
            response = await conn.response()
            assert response.status == status, response
            assert response.headers.get(b"connection") == b"close"
            assert await conn.closed() == b""
        # The server itself is fine.
        async with raw_h1(srv.port) as conn:
            await ask(conn, "still serving")


async def test_malformed_chunked_body_closes_the_connection() -> None:
    service = GatedEcho()
    async with native(gated_app(service), limits=LIMITS) as srv, raw_h1(srv.port) as conn:
        head = request_head("POST", ECHO, [*JSON, ("Transfer-Encoding", "chunked")])
        await conn.send(head + b"zz\r\n{}\r\n0\r\n\r\n")
        # No handler can get a request out of that; whatever was said, the connection ends.
        await conn.closed()
        assert service.calls == 0


async def test_oversize_request_head_gets_431() -> None:
    limits = ServerLimits(max_header_bytes=4096, graceful_timeout=0.5)
    async with native(gated_app(GatedEcho()), limits=limits) as srv:
        # Just under the limit: served.
        async with raw_h1(srv.port) as conn:
            await conn.send(unary("fits", extra=[("X-Padding", "p" * 3000)]))
            conn.expect()
            assert (await conn.response()).status == 200
        # Over it, in one header or in many: 431, and the connection closes.
        for extra in (
            [("X-Padding", "p" * 5000)],
            [(f"X-Pad-{i}", "p" * 90) for i in range(60)],
        ):
            async with raw_h1(srv.port) as conn:
                await conn.send(unary("too big", extra=extra))
                conn.expect()
                response = await conn.response()
                assert response.status == 431
                assert await conn.closed() == b""


async def test_endless_request_head_is_cut_off_at_the_limit() -> None:
    """A head that never ends is refused once it passes the limit, not buffered forever."""
    limits = ServerLimits(max_header_bytes=4096, graceful_timeout=0.5)
    async with native(gated_app(GatedEcho()), limits=limits) as srv, raw_h1(srv.port) as conn:
        await conn.send(b"POST " + ECHO.encode() + b" HTTP/1.1\r\nHost: x\r\n")
        with anyio.fail_after(10):
            for i in range(100):
                try:
                    await conn.send(f"X-Header-{i}: {'v' * 100}\r\n".encode())
                except (anyio.BrokenResourceError, OSError):
                    break  # the server closed already
        conn.expect()
        try:
            response = await conn.response()
        except h11.RemoteProtocolError:
            pass  # reset before the answer could be read: closed is fine too
        else:
            assert response.status == 431


async def test_http10_request_is_answered_and_the_connection_closes() -> None:
    async with native(gated_app(GatedEcho()), limits=LIMITS) as srv, raw_h1(srv.port) as conn:
        body = json.dumps({"text": "old client"}).encode()
        head = (
            f"POST {ECHO} HTTP/1.0\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        await conn.send(head + body)
        received = await conn.closed()
        head_bytes, _, answer = received.partition(b"\r\n\r\n")
        assert head_bytes.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"\r\nconnection: close" in head_bytes.lower()
        assert json.loads(answer)["text"] == "old client"


async def test_blank_lines_before_a_request_and_chunked_trailers_are_accepted() -> None:
    async with native(gated_app(GatedEcho()), limits=LIMITS) as srv, raw_h1(srv.port) as conn:
        body = json.dumps({"text": "trailed"}).encode()
        head = request_head("POST", ECHO, [*JSON, ("Transfer-Encoding", "chunked")])
        trailers = b"X-Checksum: abc\r\nX-Other: 1\r\n\r\n"
        await conn.send(b"\r\n" + head + b"%x\r\n%s\r\n0\r\n" % (len(body), body) + trailers)
        conn.expect()
        response = await conn.response()
        assert response.status == 200
        assert response.json["text"] == "trailed"
        await ask(conn, "and the next")


async def test_head_request_gets_no_body_and_the_connection_goes_on() -> None:
    async with native(gated_app(GatedEcho()), limits=LIMITS) as srv, raw_h1(srv.port) as conn:
        await conn.send(request_head("HEAD", ECHO))
        conn.expect("HEAD")
        response = await conn.response()
        assert response.status == 405
        assert response.body == b""
        await ask(conn, "after HEAD")


async def _raw_app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/no-content":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
    elif scope["path"] == "/injection":
        headers = [(b"x-evil", b"a\r\nset-cookie: stolen=1")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"never"})


async def test_no_content_response_has_no_body_framing() -> None:
    async with native(_raw_app) as srv, raw_h1(srv.port) as conn:
        await conn.send(request_head("GET", "/no-content") * 2)
        for _ in range(2):
            conn.expect("GET")
            response = await conn.response()
            assert response.status == 204
            assert b"content-length" not in response.headers
            assert b"transfer-encoding" not in response.headers


async def test_a_response_field_with_a_line_break_is_never_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with native(_raw_app) as srv, raw_h1(srv.port) as conn:
        await conn.send(request_head("GET", "/injection"))
        conn.expect("GET")
        response = await conn.response()
        assert response.status == 500
        assert b"set-cookie" not in response.headers
        assert b"x-evil" not in response.headers


async def test_the_same_head_twice_frames_each_body_anew() -> None:
    """Identical heads parse to the same result (the server keeps it); each request's body
    framing still starts from scratch."""
    async with native(gated_app(GatedEcho()), limits=LIMITS) as srv:
        head = request_head("POST", ECHO, [*JSON, ("Transfer-Encoding", "chunked")])
        for _ in range(2):
            async with raw_h1(srv.port) as conn:
                for text in ("first", "second, longer"):
                    body = json.dumps({"text": text}).encode()
                    await conn.send(head + chunked(body[:5], body[5:]))
                    conn.expect()
                    response = await conn.response()
                    assert response.status == 200
                    assert response.json["text"] == text
