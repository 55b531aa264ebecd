"""The native server's HTTP/2: the concurrent stream limit (advertised and enforced),
oversize header lists, RST_STREAM and connection loss cancelling exactly the right
handlers, and h2c prior knowledge beside HTTP/1.1 on one port, TLS with ALPN on another.

A raw h2-library client sends exactly the frames each test needs.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import h2.events
import h2.exceptions
import h2.settings
import hpack
import pytest
from _support.tls import TLSFiles
from anyio.abc import ByteStream
from h2.errors import ErrorCodes
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from native._helpers import (
    SERVICE,
    WAIT,
    GatedEcho,
    RawH2,
    envelope,
    gated_app,
    native,
    raw_h1,
    raw_h2,
    request_head,
    track_connections,
    wait_until,
)

from connect_anyio import ServerLimits, _serve
from connect_anyio._http2 import DEFAULT_MAX_FRAME, PREFACE

pytestmark = pytest.mark.anyio

ECHO = SERVICE + "/EchoPost"


def body(text: str, tag: str = "", block: bool = False) -> bytes:
    message: dict[str, object] = {"text": text}
    if tag:
        message["tag"] = tag
    if block:
        message["waitForCancel"] = True
    return json.dumps(message).encode()


def is_reset(stream_id: int):  # type: ignore[no-untyped-def]
    return lambda e: isinstance(e, h2.events.StreamReset) and e.stream_id == stream_id


async def answered(client: RawH2, stream_id: int, text: str) -> None:
    await client.wait_ended(stream_id)
    assert not client.of(stream_id, h2.events.StreamReset)
    assert client.status(stream_id) == 200
    assert json.loads(client.body(stream_id))["text"] == text


async def test_max_concurrent_streams_is_advertised_and_kept_by_a_conforming_client() -> None:
    service = GatedEcho()
    limits = ServerLimits(max_concurrent_streams=3, graceful_timeout=0.5)
    async with native(gated_app(service), limits=limits) as srv, raw_h2(srv.port) as client:
        settings = await client.wait_for(lambda e: isinstance(e, h2.events.RemoteSettingsChanged))
        advertised = settings.changed_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS]
        assert advertised.new_value == 3
        ids = [client.request(ECHO, body("x", f"s{i}", block=True)) for i in range(3)]
        await client.flush()
        for i in range(3):
            with anyio.fail_after(WAIT):
                await service.observations.started[f"s{i}"].wait()
        # The h2 library refuses to open a fourth itself.
        with pytest.raises(h2.exceptions.TooManyStreamsError):
            client.request(ECHO, body("too many"))
        for i, stream_id in enumerate(ids):
            service.release(f"s{i}")
            await answered(client, stream_id, "x")
        # Room again.
        stream_id = client.request(ECHO, body("room"))
        await client.flush()
        await answered(client, stream_id, "room")


async def test_streams_beyond_the_limit_are_refused_and_the_rest_are_served(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client may open streams before it has read the server's SETTINGS: those beyond the
    limit get RST_STREAM(REFUSED_STREAM) (safe to retry); the connection and the streams
    within the limit carry on."""
    tracked = track_connections(monkeypatch)
    service = GatedEcho()
    limits = ServerLimits(max_concurrent_streams=3, graceful_timeout=0.5)
    async with (
        native(gated_app(service), limits=limits) as srv,
        raw_h2(srv.port, start=False) as client,
    ):
        await client.start(flush=False)
        ids = [client.request(ECHO, body("x", f"s{i}", block=True)) for i in range(5)]
        await client.flush()  # preface, SETTINGS and five streams at once
        for stream_id in ids[3:]:
            reset = await client.wait_for(is_reset(stream_id))
            assert reset.error_code == ErrorCodes.REFUSED_STREAM
        for i in range(3):
            with anyio.fail_after(WAIT):
                await service.observations.started[f"s{i}"].wait()
        assert service.calls == 3  # no handler ever ran for a refused stream
        assert not any(isinstance(e, h2.events.ConnectionTerminated) for e in client.events)
        for i, stream_id in enumerate(ids[:3]):
            service.release(f"s{i}")
            await answered(client, stream_id, "x")
        stream_id = client.request(ECHO, body("after"))
        await client.flush()
        await answered(client, stream_id, "after")
        (conn,) = tracked.h2
        await wait_until(lambda: conn._conn.open_streams == 0 and not conn.busy)


async def test_oversize_header_list_is_refused() -> None:
    limits = ServerLimits(max_header_bytes=4096, graceful_timeout=0.5)
    service = GatedEcho()
    async with native(gated_app(service), limits=limits) as srv:
        async with raw_h2(srv.port) as client:
            stream_id = client.request(ECHO, body("fits"), headers=[(b"x-pad", b"p" * 3000)])
            await client.flush()
            await answered(client, stream_id, "fits")
        async with raw_h2(srv.port) as client:
            stream_id = client.request(ECHO, body("too big"), headers=[(b"x-pad", b"p" * 5000)])
            await client.flush()
            # HPACK stops decoding at the limit, mid-block: the connection's header state
            # is lost with it, so the whole connection goes (RFC 9113 4.3).
            refused = await client.wait_for(lambda e: isinstance(e, h2.events.ConnectionTerminated))
            assert refused.error_code == ErrorCodes.ENHANCE_YOUR_CALM
            assert not client.of(stream_id, h2.events.ResponseReceived)
            await client.wait_closed()
        assert service.calls == 1  # the oversize request never reached a handler


async def test_rst_stream_cancels_exactly_that_streams_handler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tracked = track_connections(monkeypatch)
    service = GatedEcho()
    obs = service.observations
    async with native(gated_app(service)) as srv, raw_h2(srv.port) as client:
        ids = {tag: client.request(ECHO, body(tag, tag, block=True)) for tag in "abc"}
        await client.flush()
        for tag in "abc":
            with anyio.fail_after(WAIT):
                await obs.started[tag].wait()
        client.h2.reset_stream(ids["b"], ErrorCodes.CANCEL)
        await client.flush()
        await obs.wait_cancelled("b")
        assert not obs.cancelled["a"].is_set()
        assert not obs.cancelled["c"].is_set()
        assert service.active == 2
        for tag in "ac":
            service.release(tag)
            await answered(client, ids[tag], tag)
        assert not obs.cancelled["a"].is_set()
        assert not obs.cancelled["c"].is_set()
        await service.wait_idle()
        (conn,) = tracked.h2
        await wait_until(lambda: conn._conn.open_streams == 0 and not conn.busy)


async def test_connection_loss_cancels_all_its_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    tracked = track_connections(monkeypatch)
    service = GatedEcho()
    obs = service.observations
    async with native(gated_app(service)) as srv:
        async with raw_h2(srv.port) as other:
            # A second connection whose stream must survive the first one's loss.
            survivor = other.request(ECHO, body("survivor", "survivor", block=True))
            await other.flush()
            async with raw_h2(srv.port) as client:
                for tag in ("x", "y", "z"):
                    client.request(ECHO, body(tag, tag, block=True))
                await client.flush()
                for tag in ("x", "y", "z", "survivor"):
                    with anyio.fail_after(WAIT):
                        await obs.started[tag].wait()
            # The socket is closed (no GOAWAY, no RST_STREAM).
            for tag in ("x", "y", "z"):
                await obs.wait_cancelled(tag)
            assert not obs.cancelled["survivor"].is_set()
            service.release("survivor")
            await answered(other, survivor, "survivor")
        await service.wait_idle()
        for conn in tracked.h2:
            await wait_until(lambda conn=conn: conn._conn.open_streams == 0 and not conn.busy)  # type: ignore[misc]


async def test_http1_and_h2c_prior_knowledge_on_one_port(monkeypatch: pytest.MonkeyPatch) -> None:
    tracked = track_connections(monkeypatch)
    async with native(gated_app(GatedEcho())) as srv:
        async with raw_h2(srv.port) as client:
            stream_id = client.request(ECHO, body("over h2c"))
            await client.flush()
            await answered(client, stream_id, "over h2c")
        async with raw_h1(srv.port) as conn:
            payload = body("over http/1.1")
            head = request_head(
                "POST",
                ECHO,
                [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
            )
            await conn.send(head + payload)
            conn.expect()
            response = await conn.response()
            assert response.status == 200
            assert response.json["text"] == "over http/1.1"
    assert len(tracked.h2) == 1
    assert len(tracked.h1) == 1


@pytest.mark.parametrize(
    ("alpn", "expected"),
    [(["h2"], "h2"), (["h2", "http/1.1"], "h2"), (["http/1.1"], "h1"), (None, "h1")],
    ids=["h2", "both", "http1.1", "no-alpn"],
)
async def test_tls_alpn_picks_the_protocol(
    alpn: list[str] | None, expected: str, tls_files: TLSFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracked = track_connections(monkeypatch)
    server_context = tls_files.server_context()
    async with native(gated_app(GatedEcho()), ssl=server_context) as srv:
        context = tls_files.client_context()
        if expected == "h2":
            async with raw_h2(srv.port, tls=context, start=False) as client:
                if alpn is not None:
                    context.set_alpn_protocols(alpn)
                await client.start()
                stream_id = client.request(ECHO, body("tls h2"))
                await client.flush()
                await answered(client, stream_id, "tls h2")
        else:
            async with raw_h1(srv.port, tls=context, alpn=alpn) as conn:
                payload = body("tls h1")
                head = request_head(
                    "POST",
                    ECHO,
                    [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
                )
                await conn.send(head + payload)
                conn.expect()
                response = await conn.response()
                assert response.status == 200
                assert response.json["text"] == "tls h1"
    assert len(tracked.h2) == (expected == "h2")
    assert len(tracked.h1) == (expected == "h1")


class RecordingStream(ByteStream):
    """A byte stream that keeps each write the server makes."""

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        self.writes: list[bytes] = []

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self._stream.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        self.writes.append(bytes(item))
        await self._stream.send(item)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._stream.extra_attributes


def frames_of(data: bytes) -> list[Frame]:
    frames = []
    while data:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9 : 9 + length]))
        frames.append(frame)
        data = data[9 + length :]
    return frames


@pytest.mark.parametrize(
    ("message", "status"),
    [({"text": "ok"}, 200), ({"fail": {"code": "not_found", "message": "nope"}}, 404)],
    ids=["answer", "error"],
)
async def test_a_whole_response_leaves_in_one_write(
    message: dict[str, object], status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Headers and body of a unary response go out together: a client never sees the
    headers of a finished call without its body (a Go client whose deadline struck in that
    gap reported a truncated error body)."""
    recorders: list[RecordingStream] = []

    class Recording(_serve.H2ServerConnection):
        def __init__(self, stream: ByteStream, *args: Any, **kwargs: Any) -> None:
            recorder = RecordingStream(stream)
            recorders.append(recorder)
            super().__init__(recorder, *args, **kwargs)

    monkeypatch.setattr(_serve, "H2ServerConnection", Recording)
    async with native(gated_app(GatedEcho())) as srv, raw_h2(srv.port) as client:
        stream_id = client.request(ECHO, json.dumps(message).encode())
        await client.flush()
        await client.wait_ended(stream_id)
        assert client.status(stream_id) == status
        assert json.loads(client.body(stream_id))
    (recorder,) = recorders
    writes = [frames_of(w) for w in recorder.writes]
    (write,) = [w for w in writes if any(isinstance(f, HeadersFrame) for f in w)]
    assert [type(f) for f in write if f.stream_id == stream_id] == [HeadersFrame, DataFrame]
    assert "END_STREAM" in write[-1].flags


def _request_headers(path: bytes = ECHO.encode()) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"127.0.0.1"),
        (b":path", path),
        (b"content-type", b"application/json"),
    ]


MALFORMED_HEADERS = {
    "uppercase-name": [*_request_headers(), (b"X-Upper", b"v")],
    "connection-specific": [*_request_headers(), (b"connection", b"keep-alive")],
    "transfer-encoding": [*_request_headers(), (b"transfer-encoding", b"chunked")],
    "te-not-trailers": [*_request_headers(), (b"te", b"gzip")],
    "value-with-leading-space": [*_request_headers(), (b"x-v", b" v")],
    "value-with-newline": [*_request_headers(), (b"x-v", b"a\nb")],
    "pseudo-after-regular": [*_request_headers()[:3], (b"content-type", b"x"), (b":path", b"/")],
    "unknown-pseudo": [
        *_request_headers()[:4],
        (b":protocol", b"websocket"),
        (b"content-type", b"application/json"),
    ],
    "repeated-pseudo": [(b":method", b"POST"), *_request_headers()],
    "no-path": [h for h in _request_headers() if h[0] != b":path"],
    "no-method": [h for h in _request_headers() if h[0] != b":method"],
    "host-differs": [*_request_headers(), (b"host", b"elsewhere.example")],
}


@pytest.mark.parametrize("headers", MALFORMED_HEADERS.values(), ids=MALFORMED_HEADERS.keys())
async def test_malformed_request_headers_reset_only_that_stream(
    headers: list[tuple[bytes, bytes]],
) -> None:
    """RFC 9113 8.1.1: a malformed request is a stream error (PROTOCOL_ERROR); the
    connection and its other streams go on."""
    service = GatedEcho()
    async with native(gated_app(service)) as srv, raw_h2(srv.port, validate=False) as client:
        bad = client.h2.get_next_available_stream_id()
        client.h2.send_headers(bad, headers, end_stream=True)
        good = client.request(ECHO, body("after"))
        await client.flush()
        reset = await client.wait_for(is_reset(bad))
        assert reset.error_code == ErrorCodes.PROTOCOL_ERROR
        assert not client.of(bad, h2.events.ResponseReceived)
        await answered(client, good, "after")
        assert service.calls == 1  # the malformed one never reached a handler


async def test_malformed_request_trailers_reset_the_stream() -> None:
    service = GatedEcho()
    async with native(gated_app(service)) as srv, raw_h2(srv.port, validate=False) as client:
        stream_id = client.request(ECHO, body("with trailers"), end=False)
        client.h2.send_headers(stream_id, [(b"X-Bad-Trailer", b"v")], end_stream=True)
        await client.flush()
        reset = await client.wait_for(is_reset(stream_id))
        assert reset.error_code == ErrorCodes.PROTOCOL_ERROR
        good = client.request(ECHO, body("next"))
        await client.flush()
        await answered(client, good, "next")


async def test_a_waiting_call_does_not_hold_up_the_calls_read_with_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Calls that arrive in one read run in the reading task while they do not wait; the
    first one here waits, and the two after it are answered meanwhile."""
    tracked = track_connections(monkeypatch)
    service = GatedEcho()
    obs = service.observations
    async with native(gated_app(service)) as srv, raw_h2(srv.port) as client:
        blocked = client.request(ECHO, body("blocked", "blocked", block=True))
        quick = [client.request(ECHO, body(f"quick {i}")) for i in range(2)]
        await client.flush()  # one write: the server reads all three at once
        with anyio.fail_after(WAIT):
            await obs.started["blocked"].wait()
        for i, stream_id in enumerate(quick):
            await answered(client, stream_id, f"quick {i}")
        assert not client.of(blocked, h2.events.ResponseReceived)
        # The connection still reads: a later call is answered too, the first still waits.
        later = client.request(ECHO, body("later"))
        await client.flush()
        await answered(client, later, "later")
        service.release("blocked")
        await answered(client, blocked, "blocked")
        (conn,) = tracked.h2
        await wait_until(lambda: conn._conn.open_streams == 0 and not conn.busy)


def test_hpack_decoder_cache_decodes_exactly_as_hpack_does() -> None:
    """The engine's decoder reuses the result of a block that left the dynamic table as it
    was; across additions, evictions and size updates it must agree with hpack's own."""
    import random

    import hpack

    from connect_anyio._http2 import Decoder

    rng = random.Random(7)
    names = [b"x-a", b"x-b", b"content-type", b"grpc-timeout", b"x-long"]
    values = [b"1", b"2", b"application/proto", b"10m", b"v" * 40]
    encoder = hpack.Encoder()
    encoder.header_table_size = 200  # small: entries get evicted
    ours, theirs = Decoder(), hpack.Decoder()
    blocks: list[bytes] = []
    hits = 0
    for step in range(3000):
        choice = rng.random()
        if choice < 0.5 and blocks:
            block = rng.choice(blocks[-8:])  # a block seen before: maybe cached, maybe stale
        else:
            if choice > 0.98:
                encoder.header_table_size = rng.choice([0, 100, 200])
            fields = [(rng.choice(names), rng.choice(values)) for _ in range(rng.randint(1, 4))]
            block = encoder.encode(fields)
            blocks.append(block)
        try:
            expected = theirs.decode(block, raw=True)
        except hpack.HPACKError:
            with pytest.raises(hpack.HPACKError):
                ours.decode(block)
            # Both failed on a stale block; start both over from the same state.
            ours, theirs, blocks = Decoder(), hpack.Decoder(), []
            encoder = hpack.Encoder()
            encoder.header_table_size = 200
            continue
        cached = bool(ours._cache) and bytes(block) in ours._cache
        assert ours.decode(block) == expected, step
        hits += cached
    assert hits > 100  # the cache was exercised


@pytest.mark.parametrize("count", [3, 40])
async def test_stream_messages_are_written_before_the_handler_waits(count: int) -> None:
    """Messages of a response stream are queued and written together, but never held back
    while the handler waits: all of them arrive while it is blocked (40 is more than one
    batch between the stream's own yields)."""
    service = GatedEcho()
    async with native(gated_app(service)) as srv, raw_h2(srv.port) as client:
        message = {"text": "s", "responseCount": count, "waitForCancel": True, "tag": "held"}
        stream_id = client.request(
            SERVICE + "/ServerStream",
            envelope(message),
            content_type=b"application/connect+json",
        )
        await client.flush()

        def received() -> int:
            return len(_envelopes(client.body(stream_id)))

        with anyio.fail_after(WAIT):
            while received() < count:
                # Read without answering anything (no WINDOW_UPDATE): a frame from us would
                # make the server's reader write what is queued; this test is about the
                # messages being written without that.
                data = await client.stream.receive()
                client.events.extend(client.h2.receive_data(data))
        assert service.active == 1  # still blocked on its gate
        assert not client.of(stream_id, h2.events.StreamEnded)
        service.release("held")
        await client.wait_ended(stream_id)
        frames = _envelopes(client.body(stream_id))
        assert [flags for flags, _ in frames] == [0] * count + [2]
        assert [json.loads(m).get("index", 0) for _, m in frames[:-1]] == list(range(count))


def _envelopes(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    while len(data) >= 5:
        size = int.from_bytes(data[1:5], "big")
        if len(data) < 5 + size:
            break
        out.append((data[0], data[5 : 5 + size]))
        data = data[5 + size :]
    return out


# ---------------------------------------------------------------------------
# frames by hand: what the server's own HTTP/2 implementation does with them


class Frames:
    """A client that writes frames byte by byte and reads the server's frames back."""

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.received: list[Frame] = []
        self._buf = b""
        self.closed = False

    async def send(self, *frames: Frame | bytes) -> None:
        await self.stream.send(
            b"".join(f if isinstance(f, bytes) else f.serialize() for f in frames)
        )

    def block(self, path: str = ECHO, extra: list[tuple[bytes, bytes]] | None = None) -> bytes:
        return self.encoder.encode(
            [
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":authority", b"127.0.0.1"),
                (b":path", path.encode()),
                (b"content-type", b"application/json"),
                *(extra or []),
            ]
        )

    async def wait_for(self, predicate: Callable[[Frame], bool]) -> Frame:
        with anyio.fail_after(WAIT):
            while True:
                for frame in self.received:
                    if predicate(frame):
                        return frame
                if self.closed:
                    raise AssertionError(f"closed; frames: {self.received!r}")
                await self._read()

    async def wait_closed(self) -> None:
        with anyio.fail_after(WAIT):
            while not self.closed:
                await self._read()

    async def more_than(self, count: int) -> None:
        """Reads until more than ``count`` frames have arrived."""
        with anyio.fail_after(WAIT):
            while len(self.received) <= count:
                if self.closed:
                    raise AssertionError(f"closed; frames: {self.received!r}")
                await self._read()

    async def _read(self) -> None:
        try:
            data = await self.stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            self.closed = True
            return
        self._buf += data
        while len(self._buf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self._buf[:9]))
            if len(self._buf) < 9 + length:
                break
            frame.parse_body(memoryview(self._buf[9 : 9 + length]))
            self._buf = self._buf[9 + length :]
            self.received.append(frame)

    def response_headers(self, stream_id: int) -> dict[bytes, bytes]:
        for frame in self.received:
            if isinstance(frame, HeadersFrame) and frame.stream_id == stream_id:
                return dict(self.decoder.decode(frame.data, raw=True))
        raise AssertionError(f"no HEADERS on stream {stream_id}")

    def body(self, stream_id: int) -> bytes:
        return b"".join(
            f.data for f in self.received if isinstance(f, DataFrame) and f.stream_id == stream_id
        )


@asynccontextmanager
async def frames_client(port: int, settings: dict[int, int] | None = None) -> AsyncIterator[Frames]:
    stream = await anyio.connect_tcp("127.0.0.1", port)
    try:
        client = Frames(stream)
        await client.send(PREFACE, SettingsFrame(0, settings=settings or {}))
        yield client
    finally:
        await anyio.aclose_forcefully(stream)


def goaway(code: int) -> Callable[[Frame], bool]:
    return lambda f: isinstance(f, GoAwayFrame) and f.error_code == code


def rst(stream_id: int, code: int) -> Callable[[Frame], bool]:
    return lambda f: (
        isinstance(f, RstStreamFrame) and f.stream_id == stream_id and (f.error_code == code)
    )


def ended(stream_id: int) -> Callable[[Frame], bool]:
    return lambda f: f.stream_id == stream_id and "END_STREAM" in f.flags


def raw_frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    """A frame hyperframe would refuse to build."""
    return (
        len(payload).to_bytes(3, "big")
        + bytes((kind, flags))
        + stream_id.to_bytes(4, "big")
        + payload
    )


def headers_frame(stream_id: int, block: bytes, *flags: str) -> HeadersFrame:
    frame = HeadersFrame(stream_id, block)
    frame.flags.add("END_HEADERS")
    for flag in flags:
        frame.flags.add(flag)
    return frame


def data_frame(stream_id: int, data: bytes, *flags: str, pad: int = 0) -> DataFrame:
    frame = DataFrame(stream_id, data)
    for flag in flags:
        frame.flags.add(flag)
    if pad:
        frame.flags.add("PADDED")
        frame.pad_length = pad
    return frame


async def test_ping_is_answered_with_its_payload() -> None:
    async with native(gated_app(GatedEcho())) as srv, frames_client(srv.port) as client:
        await client.send(PingFrame(0, opaque_data=b"12345678"))
        pong = await client.wait_for(lambda f: isinstance(f, PingFrame) and "ACK" in f.flags)
        assert pong.opaque_data == b"12345678"


async def test_padding_priority_and_continuation_are_understood() -> None:
    async with native(gated_app(GatedEcho())) as srv, frames_client(srv.port) as client:
        block = client.block()
        first = HeadersFrame(1, block[:3])
        first.flags.add("PRIORITY")
        first.flags.add("PADDED")
        first.pad_length = 7
        first.depends_on = 0
        first.stream_weight = 15
        rest = ContinuationFrame(1, block[3:])
        rest.flags.add("END_HEADERS")
        body_bytes = body("in frames")
        await client.send(
            first,
            rest,
            data_frame(1, body_bytes[:4], pad=20),
            PriorityFrame(1, depends_on=0, stream_weight=1),
            data_frame(1, body_bytes[4:], "END_STREAM", pad=1),
        )
        await client.wait_for(ended(1))
        assert client.response_headers(1)[b":status"] == b"200"
        assert json.loads(client.body(1))["text"] == "in frames"


MALFORMED_CONNECTION = {
    "data-on-stream-0": (lambda c: raw_frame(0x0, 0, 0, b"x"), ErrorCodes.PROTOCOL_ERROR),
    "even-stream-id": (lambda c: headers_frame(2, c.block(), "END_STREAM"), 1),
    "frame-too-large": (lambda c: data_frame(1, b"x" * (DEFAULT_MAX_FRAME + 1)), 6),
    "bad-hpack": (lambda c: headers_frame(1, b"\xff\xff\xff\xff\xff", "END_STREAM"), 9),
    "window-overflow": (lambda c: WindowUpdateFrame(0, window_increment=2**31 - 1), 3),
    "continuation-expected": (
        lambda c: HeadersFrame(1, c.block()).serialize() + PingFrame(0).serialize(),
        ErrorCodes.PROTOCOL_ERROR,
    ),
    "push-promise": (lambda c: PushPromiseFrame(1, promised_stream_id=2), 1),
    "idle-rst-stream": (lambda c: RstStreamFrame(9, error_code=8), 1),
    # What the engine shared with the client checks on the server too.
    "data-on-an-even-stream-below-the-highest": (
        lambda c: headers_frame(3, c.block(), "END_STREAM").serialize() + raw_frame(0, 0, 2, b"x"),
        ErrorCodes.PROTOCOL_ERROR,
    ),
    "window-update-on-an-even-stream": (
        lambda c: (
            headers_frame(3, c.block(), "END_STREAM").serialize()
            + raw_frame(8, 0, 2, b"\x00\x00\x00\x01")
        ),
        ErrorCodes.PROTOCOL_ERROR,
    ),
    "window-update-of-3-bytes": (lambda c: raw_frame(8, 0, 0, b"\x00\x00\x01"), 6),
    "rst-stream-of-3-bytes": (lambda c: raw_frame(3, 0, 1, b"\x00\x00\x08"), 6),
    "goaway-of-4-bytes": (lambda c: raw_frame(7, 0, 0, b"\x00" * 4), 6),
    "ping-of-4-bytes": (lambda c: raw_frame(6, 0, 0, b"1234"), 6),
    "settings-ack-with-payload": (lambda c: raw_frame(4, 1, 0, b"\x00\x03\x00\x00\x00\x01"), 6),
    "enable-push-of-2": (lambda c: raw_frame(4, 0, 0, b"\x00\x02\x00\x00\x00\x02"), 1),
    "initial-window-too-large": (lambda c: raw_frame(4, 0, 0, b"\x00\x04\x80\x00\x00\x00"), 3),
    "max-frame-size-too-small": (lambda c: raw_frame(4, 0, 0, b"\x00\x05\x00\x00\x01\x00"), 1),
    "padding-beyond-the-frame": (
        lambda c: (
            headers_frame(1, c.block()).serialize() + raw_frame(0, 0x8, 1, b"\x09" + b"x" * 4)
        ),
        ErrorCodes.PROTOCOL_ERROR,
    ),
}


@pytest.mark.parametrize(
    ("make", "code"), MALFORMED_CONNECTION.values(), ids=MALFORMED_CONNECTION.keys()
)
async def test_a_connection_error_ends_the_connection_with_goaway(
    make: Callable[[Frames], Frame | bytes], code: int
) -> None:
    service = GatedEcho()
    async with native(gated_app(service)) as srv:
        async with frames_client(srv.port) as client:
            await client.send(make(client))
            await client.wait_for(goaway(code))
            await client.wait_closed()
        async with raw_h2(srv.port) as other:  # the server itself is fine
            stream_id = other.request(ECHO, body("next"))
            await other.flush()
            await answered(other, stream_id, "next")


async def test_first_frame_must_be_settings() -> None:
    async with native(gated_app(GatedEcho())) as srv:
        stream = await anyio.connect_tcp("127.0.0.1", srv.port)
        async with stream:
            client = Frames(stream)
            await client.send(PREFACE, PingFrame(0))
            await client.wait_for(goaway(ErrorCodes.PROTOCOL_ERROR))
            await client.wait_closed()


MALFORMED_STREAM = {
    "content-length-short": (
        lambda c: [
            headers_frame(1, c.block(extra=[(b"content-length", b"10")])),
            data_frame(1, b"{}", "END_STREAM"),
        ],
        ErrorCodes.PROTOCOL_ERROR,
    ),
    "content-length-long": (
        lambda c: [
            headers_frame(1, c.block(extra=[(b"content-length", b"1")])),
            data_frame(1, b"{}", "END_STREAM"),
        ],
        ErrorCodes.PROTOCOL_ERROR,
    ),
    "data-after-end": (
        lambda c: [headers_frame(1, c.block(), "END_STREAM"), data_frame(1, b"{}")],
        ErrorCodes.STREAM_CLOSED,
    ),
    "stream-window-overflow": (
        lambda c: [headers_frame(1, c.block()), WindowUpdateFrame(1, window_increment=2**31 - 1)],
        ErrorCodes.FLOW_CONTROL_ERROR,
    ),
    "self-dependency": (
        lambda c: [PriorityFrame(1, depends_on=1)],
        ErrorCodes.PROTOCOL_ERROR,
    ),
}


@pytest.mark.parametrize(("make", "code"), MALFORMED_STREAM.values(), ids=MALFORMED_STREAM.keys())
async def test_a_stream_error_resets_only_that_stream(
    make: Callable[[Frames], list[Frame]], code: int
) -> None:
    service = GatedEcho()
    async with native(gated_app(service)) as srv, frames_client(srv.port) as client:
        await client.send(*make(client))
        await client.wait_for(rst(1, code))
        await client.send(headers_frame(3, client.block()), data_frame(3, body("on"), "END_STREAM"))
        await client.wait_for(ended(3))
        assert json.loads(client.body(3))["text"] == "on"
        assert not any(isinstance(f, GoAwayFrame) for f in client.received)


async def test_a_header_table_size_change_is_acknowledged_in_the_next_block() -> None:
    """Our encoder keeps no dynamic table; after the client changes its table size the
    next response block starts with a size update to 0 again (RFC 7541, 4.2), and h2's
    decoder reads every block."""
    async with native(gated_app(GatedEcho())) as srv, frames_client(srv.port) as client:
        await client.send(headers_frame(1, client.block()), data_frame(1, body("a"), "END_STREAM"))
        await client.wait_for(ended(1))

        def acks() -> int:
            return sum(isinstance(f, SettingsFrame) and "ACK" in f.flags for f in client.received)

        before = acks()
        await client.send(SettingsFrame(0, settings={SettingsFrame.HEADER_TABLE_SIZE: 100}))
        while acks() == before:
            await client.more_than(len(client.received))
        await client.send(headers_frame(3, client.block()), data_frame(3, body("b"), "END_STREAM"))
        await client.wait_for(ended(3))
        await client.send(headers_frame(5, client.block()), data_frame(5, body("c"), "END_STREAM"))
        await client.wait_for(ended(5))
        blocks = {
            f.stream_id: bytes(f.data) for f in client.received if isinstance(f, HeadersFrame)
        }
        assert blocks[1][:1] == b"\x20"
        assert blocks[3][:1] == b"\x20"
        assert blocks[5][:1] != b"\x20"
        for stream_id in (1, 3, 5):
            assert client.response_headers(stream_id)[b":status"] == b"200"


async def test_response_waits_for_the_window_the_client_opens() -> None:
    """A client with a 10-byte stream window gets a longer response in pieces of at most
    10 bytes, each sent once it opened the window again."""
    async with (
        native(gated_app(GatedEcho())) as srv,
        frames_client(srv.port, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 10}) as client,
    ):
        text = "a response longer than ten bytes"
        await client.send(headers_frame(1, client.block()), data_frame(1, body(text), "END_STREAM"))
        seen = 0
        pieces = []
        with anyio.fail_after(WAIT):
            while not any(ended(1)(f) for f in client.received):
                new = [f for f in client.received[seen:] if isinstance(f, DataFrame)]
                seen = len(client.received)
                granted = sum(len(f.data) for f in new)
                if granted:
                    pieces.append(granted)
                    await client.send(WindowUpdateFrame(1, window_increment=granted))
                await client.more_than(seen)
        assert max(pieces) <= 10
        assert len(pieces) > 2
        assert json.loads(client.body(1))["text"] == text


async def test_data_beyond_the_stream_window_resets_the_stream() -> None:
    """A handler that does not read leaves the stream's window (1 MiB) used up; a client
    that sends past it gets RST_STREAM(FLOW_CONTROL_ERROR), and the connection goes on."""
    hold = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/hold":
            await hold.wait()  # never reads the body
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async with native(app) as srv, frames_client(srv.port) as client:
        chunks = [data_frame(1, b"x" * 65536) for _ in range(17)]  # 1 MiB + 64 KiB
        await client.send(headers_frame(1, client.block("/hold")), *chunks)
        await client.wait_for(rst(1, ErrorCodes.FLOW_CONTROL_ERROR))
        await client.send(headers_frame(3, client.block("/other"), "END_STREAM"))
        await client.wait_for(ended(3))
        assert client.body(3) == b"ok"
        hold.set()
