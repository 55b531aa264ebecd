"""``ResponseMetadata`` on the sync client, called from plain threads.

Every stream type over Connect, gRPC and gRPC-Web on every transport they run on, against
hypercorn and the native server (each on its event loop in a thread); errors; and two
threads sharing one client whose calls interleave, each seeing its own values.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from _support.servers import SERVERS, protocol_transports
from _support.service import EchoRequest, echo_app
from _support.tls import TLSFiles
from connectanyio.testing.v1 import testing_connect
from toolbox._helpers import WAIT, serve_in_thread

from connect_anyio import Code, ConnectError, Headers, ProtocolType, ResponseMetadata

Client = testing_connect.EchoServiceClientSync


@contextmanager
def serving(
    server: str, protocol: ProtocolType, transport: str, tls: TLSFiles | None = None
) -> Iterator[Client]:
    with (
        serve_in_thread(echo_app(), server=server, transport=transport, tls=tls) as running,
        Client(running.url, protocol=protocol, http_client=running.http_client()) as client,
    ):
        yield client


def _check(meta: ResponseMetadata, value: str) -> None:
    assert meta.headers().get("x-test-call") == value
    assert meta.trailers().get("x-test-call-trailer") == value
    assert "x-test-call-trailer" not in meta.headers()
    assert "x-test-call" not in meta.trailers()


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize(
    ("protocol", "transport"), protocol_transports(), ids=lambda v: getattr(v, "value", v)
)
def test_every_stream_type(
    server: str, protocol: ProtocolType, transport: str, tls_files: TLSFiles
) -> None:
    with serving(server, protocol, transport, tls_files) as client:
        with ResponseMetadata() as meta:
            client.echo(EchoRequest(), headers={"x-test-call": "unary"})
        _check(meta, "unary")

        with ResponseMetadata() as meta:
            client.client_stream(
                [EchoRequest(text="a"), EchoRequest(text="b")], headers={"x-test-call": "client"}
            )
        _check(meta, "client")

        with (
            ResponseMetadata() as meta,
            client.server_stream(
                EchoRequest(response_count=2), headers={"x-test-call": "server"}
            ) as stream,
        ):
            next(stream)
            assert meta.headers()["x-test-call"] == "server"
            assert "x-test-call-trailer" not in meta.trailers()
            assert [r.index for r in stream] == [1]
        _check(meta, "server")

        with (
            ResponseMetadata() as meta,
            client.bidi(
                (EchoRequest(text=t) for t in "ab"), headers={"x-test-call": "bidi"}
            ) as stream,
        ):
            assert [r.text for r in stream] == ["a", "b"]
        _check(meta, "bidi")


@pytest.mark.parametrize("protocol", list(ProtocolType))
def test_errors_keep_their_metadata(protocol: ProtocolType) -> None:
    fail = {"code": "not_found", "message": "nope"}
    with serving("native", protocol, "h2c") as client:
        with ResponseMetadata() as meta, pytest.raises(ConnectError) as unary:
            client.echo(EchoRequest(fail=fail), headers={"x-test-call": "unary"})
        assert unary.value.code is Code.NOT_FOUND
        seen = Headers(meta.headers())
        for key, value in meta.trailers().allitems():
            seen.add(key, value)
        assert seen.get("x-test-call") == "unary"
        assert seen.get("x-test-call-trailer") == "unary"

        with ResponseMetadata() as meta, pytest.raises(ConnectError) as streamed:
            for _ in client.server_stream(
                EchoRequest(response_count=1, fail=fail), headers={"x-test-call": "stream"}
            ):
                pass
        assert streamed.value.code is Code.NOT_FOUND
        _check(meta, "stream")


@pytest.mark.parametrize("protocol", [ProtocolType.CONNECT, ProtocolType.GRPC])
def test_threads_sharing_a_client_each_see_their_own(protocol: ProtocolType) -> None:
    """A gets its headers, B gets its headers, A ends, B ends: each thread's
    ResponseMetadata holds its own call's values."""
    a_has_headers, b_has_headers, a_done = threading.Event(), threading.Event(), threading.Event()
    results: dict[str, ResponseMetadata] = {}
    errors: list[BaseException] = []

    def run(name: str, before_end: threading.Event, my_headers: threading.Event) -> None:
        try:
            with (
                ResponseMetadata() as meta,
                client.server_stream(
                    EchoRequest(response_count=2), headers={"x-test-call": name}
                ) as stream,
            ):
                next(stream)
                my_headers.set()
                assert before_end.wait(WAIT)
                assert meta.headers()["x-test-call"] == name
                assert [r.index for r in stream] == [1]
            results[name] = meta
        except BaseException as e:
            errors.append(e)
            my_headers.set()
        finally:
            if name == "A":
                a_done.set()

    with serving("native", protocol, "h2c") as client, ResponseMetadata() as mine:
        a = threading.Thread(target=run, args=("A", b_has_headers, a_has_headers))
        b = threading.Thread(target=run, args=("B", a_done, b_has_headers))
        a.start()
        assert a_has_headers.wait(WAIT)
        b.start()
        a.join(WAIT)
        b.join(WAIT)
        assert not a.is_alive()
        assert not b.is_alive()
    assert errors == []
    _check(results["A"], "A")
    _check(results["B"], "B")
    assert mine.headers() == Headers()
    assert mine.trailers() == Headers()
