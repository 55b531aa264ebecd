"""``ConnectClientSync`` (the generated ``EchoServiceClientSync``) against ASGI servers.

Called from plain threads (no event loop in them), against hypercorn and the native server
(each on its own loop in a thread), over Connect, gRPC and gRPC-Web on HTTP/1.1, h2c and
TLS: every stream kind with request streams from plain iterables and response streams as
iterators, full-duplex bidi driven by a blocking request generator, timeouts, compression,
many threads sharing one client, and either event-loop backend under the client.
(``test_wsgi_sync.py`` covers the same client against the WSGI application.)
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from _support.servers import SERVERS, protocol_transports
from _support.service import EchoRequest, Observations, echo_app
from _support.tls import TLSFiles
from anyio.from_thread import BlockingPortal
from connectanyio.testing.v1 import testing_connect
from toolbox._helpers import WAIT, serve_in_thread_portal

from connect_anyio import (
    Code,
    ConnectError,
    HTTPClient,
    HTTPVersion,
    ProtocolType,
    ResponseMetadata,
    ResponseStreamSync,
)

Client = testing_connect.EchoServiceClientSync
HTTP2 = ("h2c", "tls")


@contextmanager
def serving(
    *,
    server: str = "native",
    protocol: ProtocolType = ProtocolType.CONNECT,
    transport: str = "h2c",
    tls: TLSFiles | None = None,
    observations: Observations | None = None,
    **options: Any,
) -> Iterator[tuple[Client, BlockingPortal]]:
    """A server on its own loop in a thread; a sync client for it; the portal to that loop."""
    with (
        serve_in_thread_portal(
            echo_app(observations), server=server, transport=transport, tls=tls
        ) as (running, portal),
        Client(running.url, protocol=protocol, http_client=running.http_client(), **options) as c,
    ):
        yield c, portal


def _texts(*texts: str) -> Iterator[EchoRequest]:
    for text in texts:
        yield EchoRequest(text=text)


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize(
    ("protocol", "transport"), protocol_transports(), ids=lambda v: getattr(v, "value", v)
)
def test_every_stream_kind(
    server: str, protocol: ProtocolType, transport: str, tls_files: TLSFiles
) -> None:
    assert threading.current_thread() is threading.main_thread()
    with serving(server=server, protocol=protocol, transport=transport, tls=tls_files) as (c, _):
        assert c.echo(EchoRequest(text="unary")).text == "unary"
        if protocol is ProtocolType.CONNECT:
            assert c.echo(EchoRequest(text="get"), use_get=True).text == "get"

        # Request streams from any plain iterable: a list, a tuple, a generator.
        plain: list[tuple[Any, list[str]]] = [
            ([EchoRequest(text="l1"), EchoRequest(text="l2")], ["l1", "l2"]),
            ((EchoRequest(text="t1"),), ["t1"]),
            (_texts("g1", "g2", "g3"), ["g1", "g2", "g3"]),
        ]
        for requests, expected in plain:
            assert list(c.client_stream(requests).request_texts) == expected

        # Response streams are iterators: next(), then a for loop for the rest.
        stream = c.server_stream(EchoRequest(text="s", response_count=4))
        assert isinstance(stream, ResponseStreamSync)
        assert iter(stream) is stream
        assert next(stream).index == 0
        assert [r.index for r in stream] == [1, 2, 3]
        with pytest.raises(StopIteration):
            next(stream)

        with c.bidi(_texts("b1", "b2")) as bidi:
            assert [(r.text, r.index) for r in bidi] == [("b1", 0), ("b2", 1)]

        # Nothing to send and nothing to answer.
        assert list(c.bidi([])) == []
        assert list(c.server_stream(EchoRequest(response_count=0))) == []


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("protocol", list(ProtocolType))
def test_full_duplex_bidi_from_a_blocking_generator(
    server: str, protocol: ProtocolType, tls_files: TLSFiles
) -> None:
    """The request generator blocks until the caller has the previous response: only a
    client that sends while it receives (HTTP/2, inside ``with``) gets through."""
    answered: queue.Queue[str] = queue.Queue()

    def ping_pong() -> Iterator[EchoRequest]:
        for i in range(3):
            yield EchoRequest(text=f"ping {i}")
            assert answered.get(timeout=WAIT) == f"ping {i}"

    with (
        serving(server=server, protocol=protocol, transport="tls", tls=tls_files) as (c, _),
        c.bidi(ping_pong()) as stream,
    ):
        got = []
        for response in stream:
            got.append(response.text)
            answered.put(response.text)
    assert got == ["ping 0", "ping 1", "ping 2"]


@pytest.mark.parametrize("protocol", list(ProtocolType))
@pytest.mark.parametrize("kind", ["unary", "client_stream", "server_stream", "bidi"])
def test_timeouts(kind: str, protocol: ProtocolType) -> None:
    """The call's deadline ends it with deadline_exceeded, and the server's handler is
    cancelled too; per-call ``timeout_ms`` overrides the client's."""
    observations = Observations()
    tag = f"{kind}-{protocol.value}"
    blocking = EchoRequest(text="wait", wait_for_cancel=True, tag=tag)
    with serving(protocol=protocol, observations=observations, timeout_ms=60_000) as (c, portal):
        received: list[int] = []
        with pytest.raises(ConnectError) as caught:
            if kind == "unary":
                c.echo(blocking, timeout_ms=300)
            elif kind == "client_stream":
                c.client_stream([EchoRequest(text="first"), blocking], timeout_ms=300)
            elif kind == "server_stream":
                blocking.response_count = 2
                for response in c.server_stream(blocking, timeout_ms=300):
                    received.append(response.index)
            else:
                for response in c.bidi([EchoRequest(text="first"), blocking], timeout_ms=300):
                    received.append(response.index)
        assert caught.value.code is Code.DEADLINE_EXCEEDED
        # What came before the deadline arrived.
        assert received == ([0, 1] if kind == "server_stream" else [0] if kind == "bidi" else [])
        portal.call(observations.wait_cancelled, tag)


def test_client_timeout_applies_to_every_call() -> None:
    observations = Observations()
    with serving(observations=observations, timeout_ms=300) as (c, portal):
        with pytest.raises(ConnectError) as caught:
            c.echo(EchoRequest(wait_for_cancel=True, tag="client-wide"))
        assert caught.value.code is Code.DEADLINE_EXCEEDED
        portal.call(observations.wait_cancelled, "client-wide")
        # The server sees the remaining time of the client's deadline.
        assert 0 < c.echo(EchoRequest()).timeout_ms <= 300


@pytest.mark.parametrize("compression", ["gzip", "br", "zstd"])
@pytest.mark.parametrize("protocol", list(ProtocolType))
def test_compression(protocol: ProtocolType, compression: str) -> None:
    big = "x" * 5000
    options = {"send_compression": compression, "accept_compression": [compression]}
    with serving(protocol=protocol, **options) as (c, _):
        with ResponseMetadata() as meta:
            response = c.echo(EchoRequest(text=big, response_payload_size=5000))
        encoding = "content-encoding" if protocol is ProtocolType.CONNECT else "grpc-encoding"
        assert meta.headers()[encoding] == compression
        assert response.text == big
        assert len(response.payload) == 5000
        with ResponseMetadata() as meta, c.bidi([EchoRequest(text=big)] * 3) as stream:
            assert [r.text for r in stream] == [big] * 3
        streamed = "connect-content-encoding" if protocol is ProtocolType.CONNECT else encoding
        assert meta.headers()[streamed] == compression
        assert c.client_stream([EchoRequest(text=big)] * 2).request_texts == [big, big]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_many_threads_share_one_client(backend: str) -> None:
    """One client, eight plain threads, every kind of call at once; each thread gets its own
    answers. The client's own loop runs on ``backend``."""
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        try:
            start.wait(WAIT)
            for i in range(5):
                text = f"t{n}-{i}"
                assert c.echo(EchoRequest(text=text)).text == text
                assert list(c.client_stream(_texts(text, text)).request_texts) == [text, text]
                responses = c.server_stream(EchoRequest(text=text, response_count=2))
                assert [r.text for r in responses] == [text, text]
                with c.bidi(_texts(text)) as stream:
                    assert [r.text for r in stream] == [text]
        except BaseException as e:
            errors.append(e)

    with serving(protocol=ProtocolType.GRPC, backend=backend) as (c, _):
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT * 3)
        assert not any(t.is_alive() for t in threads)
    assert errors == []


def test_close_stops_the_event_loop_thread_and_its_http_client() -> None:
    before = set(threading.enumerate())
    with serve_in_thread_portal(echo_app(), transport="h2c") as (running, _):
        started = set(threading.enumerate())
        http = HTTPClient(http_version=HTTPVersion.HTTP2)
        client = Client(running.url, http_client=http)
        assert client.echo(EchoRequest(text="hi")).text == "hi"
        assert len(set(threading.enumerate()) - started) >= 1  # the client's loop thread
        client.close()
        client.close()  # idempotent
        assert set(threading.enumerate()) - started == set()
    # The server's thread is gone too; the HTTP client's sockets were closed (an unclosed
    # one would fail the test with a ResourceWarning).
    assert set(threading.enumerate()) - before == set()


def test_response_stream_closed_early_cancels_on_the_wire() -> None:
    observations = Observations()
    with serving(observations=observations) as (c, portal):
        stream = c.server_stream(EchoRequest(response_count=1, wait_for_cancel=True, tag="x"))
        assert next(stream).index == 0
        stream.close()
        portal.call(observations.wait_cancelled, "x")
        with pytest.raises(StopIteration):
            next(stream)
        # The client still works.
        assert c.echo(EchoRequest(text="after")).text == "after"
