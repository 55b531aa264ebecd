"""Deadlines: the client sends its timeout (Connect-Timeout-Ms, grpc-timeout), the handler
sees the time left, and on expiry the client gets deadline_exceeded while the handler is
cancelled; the server enforces the deadline on its own too."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import anyio
import pytest
from _support.raw import raw_request
from _support.recording import CallRecorder
from _support.servers import SERVERS, protocol_transports, run_server
from _support.service import EchoRequest, Observations, echo_app
from _support.tls import TLSFiles
from connectanyio.testing.v1 import testing_connect, testing_pb2

from connect_anyio import Code, ConnectError, HTTPClient, HTTPVersion, ProtocolType
from connect_anyio import _protocol_grpc as grpc
from connect_anyio._envelope import encode_envelope
from connect_anyio._protocol import ClientRequest
from connect_anyio._transport import Origin

pytestmark = pytest.mark.anyio

PAIRS = protocol_transports()
PAIR_IDS = [f"{p.name.lower()}-{t}" for p, t in PAIRS]
# Expiry does not depend on TLS: HTTP/1.1 and h2c are enough there.
PLAIN_PAIRS = [(p, t) for p, t in PAIRS if t != "tls"]
PLAIN_IDS = [f"{p.name.lower()}-{t}" for p, t in PLAIN_PAIRS]
EXPIRY_MS = 250
_tags = itertools.count()

Client = testing_connect.EchoServiceClient


def _sent_timeout_ms(protocol: ProtocolType, recorder: CallRecorder) -> float:
    headers = recorder.last.headers
    if protocol is ProtocolType.CONNECT:
        assert "grpc-timeout" not in headers
        return float(headers["connect-timeout-ms"])
    assert "connect-timeout-ms" not in headers
    value = grpc.parse_timeout(headers["grpc-timeout"])
    assert value is not None
    return value


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize(("protocol", "transport"), PAIRS, ids=PAIR_IDS)
async def test_timeout_is_sent_and_the_handler_sees_the_time_left(
    protocol: ProtocolType, transport: str, server: str, tls_files: TLSFiles
) -> None:
    recorder = CallRecorder()

    async def two() -> AsyncIterator[EchoRequest]:
        yield EchoRequest(text="a")
        yield EchoRequest(text="b")

    async with (
        run_server(
            echo_app(interceptors=[recorder]), server=server, transport=transport, tls=tls_files
        ) as srv,
        srv.http_client() as http,
        Client(srv.url, protocol=protocol, http_client=http, timeout_ms=30_000) as client,
    ):
        # Per call ...
        response = await client.echo_post(EchoRequest(), timeout_ms=5000)
        assert 4000 < _sent_timeout_ms(protocol, recorder) <= 5000
        assert 4000 < response.timeout_ms <= 5000
        # ... or the client's default, for every stream type.
        async with client.server_stream(EchoRequest(response_count=2)) as stream:
            left = [r.timeout_ms async for r in stream]
        assert 20_000 < _sent_timeout_ms(protocol, recorder) <= 30_000
        assert len(left) == 2
        assert 20_000 < left[1] <= left[0] <= 30_000
        response = await client.client_stream(two())
        assert 20_000 < response.timeout_ms <= 30_000
        async with client.bidi(two()) as stream:
            assert all([20_000 < r.timeout_ms <= 30_000 async for r in stream])
    # Without a timeout, nothing is sent and the handler sees none.
    async with (
        run_server(
            echo_app(interceptors=[recorder]), server=server, transport=transport, tls=tls_files
        ) as srv,
        srv.http_client() as http,
        Client(srv.url, protocol=protocol, http_client=http) as client,
    ):
        assert (await client.echo_post(EchoRequest())).timeout_ms == -1
        assert "connect-timeout-ms" not in recorder.last.headers
        assert "grpc-timeout" not in recorder.last.headers


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize(("protocol", "transport"), PLAIN_PAIRS, ids=PLAIN_IDS)
@pytest.mark.parametrize("kind", ["unary", "server_stream", "client_stream", "bidi"])
async def test_deadline_expiry(
    kind: str, protocol: ProtocolType, transport: str, server: str, tls_files: TLSFiles
) -> None:
    obs = Observations()
    tag = f"deadline-{next(_tags)}"
    blocker = EchoRequest(tag=tag, wait_for_cancel=True, response_count=1)
    received: list[int] = []

    async def requests() -> AsyncIterator[EchoRequest]:
        if kind == "bidi":
            yield EchoRequest(text="first")  # answered before the handler blocks
        yield blocker

    async with (
        run_server(echo_app(obs), server=server, transport=transport, tls=tls_files) as srv,
        srv.http_client() as http,
        Client(srv.url, protocol=protocol, http_client=http) as client,
    ):
        with pytest.raises(ConnectError) as info, anyio.fail_after(10):
            if kind == "unary":
                await client.echo_post(blocker, timeout_ms=EXPIRY_MS)
            elif kind == "client_stream":
                await client.client_stream(requests(), timeout_ms=EXPIRY_MS)
            else:
                if kind == "server_stream":
                    stream = client.server_stream(blocker, timeout_ms=EXPIRY_MS)
                else:
                    stream = client.bidi(requests(), timeout_ms=EXPIRY_MS)
                async with stream:
                    async for response in stream:
                        received.append(response.index)
        assert info.value.code is Code.DEADLINE_EXCEEDED
        # Streams deliver what came before the deadline.
        assert received == ([0] if kind in ("server_stream", "bidi") else [])
        await obs.wait_cancelled(tag)
        assert (await client.echo_post(EchoRequest(text="after"))).text == "after"


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("transport", ["h1", "h2c"])
async def test_server_enforces_connect_deadline_on_its_own(
    transport: str, server: str, tls_files: TLSFiles
) -> None:
    """A raw client that never times out: the server answers deadline_exceeded itself."""
    obs = Observations()
    tag = f"server-deadline-{next(_tags)}"
    body = EchoRequest(tag=tag, wait_for_cancel=True).SerializeToString()
    async with run_server(echo_app(obs), server=server, transport=transport, tls=tls_files) as srv:
        with anyio.fail_after(10):
            response = await raw_request(
                srv,
                "POST",
                "/connectanyio.testing.v1.EchoService/EchoPost",
                [(b"content-type", b"application/proto"), (b"connect-timeout-ms", b"100")],
                body,
            )
        assert response.status == 504
        assert response.headers["content-type"] == "application/json"
        assert b'"code":"deadline_exceeded"' in response.body
        await obs.wait_cancelled(tag)


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("web", [False, True], ids=["grpc", "grpc_web"])
async def test_server_enforces_grpc_deadline_on_its_own(server: str, web: bool) -> None:
    obs = Observations()
    tag = f"server-deadline-{next(_tags)}"
    body = encode_envelope(0, EchoRequest(tag=tag, wait_for_cancel=True).SerializeToString())
    content_type = b"application/grpc-web+proto" if web else b"application/grpc+proto"
    async with (
        run_server(echo_app(obs), server=server, transport="h2c") as srv,
        HTTPClient(http_version=HTTPVersion.HTTP2) as http,
    ):
        port = int(srv.url.rsplit(":", 1)[1])
        request = ClientRequest(
            "POST",
            "/connectanyio.testing.v1.EchoService/EchoPost",
            [(b"content-type", content_type), (b"te", b"trailers"), (b"grpc-timeout", b"100m")],
            body,
        )
        with anyio.fail_after(10):
            status, headers, _, trailers = await http.unary(
                Origin("http", "127.0.0.1", port), request
            )
        assert status == 200
        # Trailers-only (status in the headers) or trailers: grpc-status 4 either way.
        statuses = [v for k, v in [*headers, *(trailers or [])] if k == b"grpc-status"]
        assert statuses == [b"4"]
        await obs.wait_cancelled(tag)


class _LateLoop(HTTPClient):
    """An HTTP client whose event loop was busy when the response came: the response is
    handed over only once the call's deadline has passed, without our timer getting a
    chance to cancel first (the wait is shielded)."""

    late_by = EXPIRY_MS * 2 / 1000

    async def unary(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        result = await super().unary(*args, **kwargs)
        with anyio.CancelScope(shield=True):
            await anyio.sleep(self.late_by)
        return result

    async def open(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        response = await super().open(*args, **kwargs)
        with anyio.CancelScope(shield=True):
            await anyio.sleep(self.late_by)
        return response


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize(("protocol", "transport"), PLAIN_PAIRS, ids=PLAIN_IDS)
@pytest.mark.parametrize("kind", ["unary", "server_stream"])
async def test_an_error_seen_after_the_deadline_is_the_deadline(
    kind: str, protocol: ProtocolType, transport: str, server: str, tls_files: TLSFiles
) -> None:
    """The server answers with an error of its own (here at once; in the wild, its side of
    the same deadline racing ours), and our loop sees it only after the deadline: the
    caller gets deadline_exceeded, as if our timer had fired first. Without a deadline
    the server's error comes through unchanged."""
    failing = EchoRequest(fail=testing_pb2.Failure(code="unavailable", message="went away"))
    async with run_server(echo_app(), server=server, transport=transport, tls=tls_files) as srv:
        version = {"h1": HTTPVersion.HTTP1, "h2c": HTTPVersion.HTTP2}[transport]
        async with (
            _LateLoop(http_version=version) as http,
            Client(srv.url, protocol=protocol, http_client=http) as client,
        ):

            async def call(timeout_ms: int | None) -> None:
                if kind == "unary":
                    await client.echo_post(failing, timeout_ms=timeout_ms)
                else:
                    async with client.server_stream(failing, timeout_ms=timeout_ms) as stream:
                        async for _ in stream:
                            pass

            with pytest.raises(ConnectError) as caught:
                await call(EXPIRY_MS)
            assert caught.value.code is Code.DEADLINE_EXCEEDED
            with pytest.raises(ConnectError) as caught:
                await call(None)
            assert (caught.value.code, caught.value.message) == (Code.UNAVAILABLE, "went away")
