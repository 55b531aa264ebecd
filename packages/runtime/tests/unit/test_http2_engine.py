"""The HTTP/2 engine without I/O: a client-role and a server-role ``H2Connection`` talking to
each other through their output queues, so both roles of the one engine are checked against
each other (the tests in native/ and e2e/ check each role against ``h2``'s)."""

from __future__ import annotations

from connect_anyio._http2 import (
    DEFAULT_STREAM_WINDOW,
    ErrorCodes,
    H2Connection,
    H2Stream,
    StreamError,
)

REQUEST = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":authority", b"example"),
    (b":path", b"/svc/Method"),
    (b"content-type", b"application/grpc"),
    (b"te", b"trailers"),
]


class Pair:
    def __init__(self) -> None:
        self.requests: list[H2Stream] = []
        self.client = H2Connection(client=True)
        self.server = H2Connection(client=False, on_request=self.requests.append)
        self.client._queue_preface()
        self.server._queue_preface()
        self.pump()

    def pump(self) -> None:
        """Delivers what each side queued until neither has anything to say."""
        while self.client._out or self.server._out:
            to_server = b"".join(self.client._out)
            self.client._out.clear()
            to_client = b"".join(self.server._out)
            self.server._out.clear()
            if to_server:
                self.server.process(to_server)
            if to_client:
                self.client.process(to_client)

    def open(self, body: bytes, end_stream: bool = True) -> H2Stream:
        stream = H2Stream(self.client, self.client._next_id)
        rest = self.client._open_stream(stream, REQUEST, end_stream, body)
        assert rest == b""
        self.pump()
        return stream


def test_a_unary_exchange_with_trailers() -> None:
    pair = Pair()
    assert pair.client.error is None
    assert pair.server.error is None
    sent = pair.open(b"request")
    (received,) = pair.requests
    assert received.id == sent.id == 1
    assert received.headers == REQUEST
    assert list(received._data) == [b"request"]
    assert received.remote_ended
    pair.server._queue_headers(1, [(b":status", b"200")], False)
    received._queue_data(b"response", False)
    pair.server._queue_headers(1, [(b"grpc-status", b"0")], True)
    received._closed_locally()
    pair.pump()
    assert (sent.status, sent.headers) == (200, [])
    assert list(sent._data) == [b"response"]
    assert sent.trailers == [(b"grpc-status", b"0")]
    assert sent.remote_ended
    assert sent.local_closed
    assert pair.client._active == 0  # closed both ways: no longer counts


def test_windows_are_given_back_as_the_application_consumes() -> None:
    pair = Pair()
    sent = pair.open(b"", end_stream=False)
    (received,) = pair.requests
    chunk = b"x" * 16384
    total = 0
    while sent._window() >= len(chunk):
        sent._queue_data(chunk, False)
        total += len(chunk)
    pair.pump()
    assert received.buffered == total == DEFAULT_STREAM_WINDOW
    assert received.receive_window == 0
    assert sent._window() == 0
    # The server's application takes half the window: a WINDOW_UPDATE opens it again.
    taken = 0
    while taken < DEFAULT_STREAM_WINDOW // 2:
        data = received._data.popleft()
        received._taken(len(data))
        taken += len(data)
    pair.pump()
    assert sent.send_window == taken
    assert received.receive_window == taken


def test_a_reset_reaches_the_other_side_and_later_frames_are_ignored() -> None:
    pair = Pair()
    sent = pair.open(b"", end_stream=False)
    (received,) = pair.requests
    sent.reset_nowait(ErrorCodes.CANCEL)
    pair.pump()
    assert isinstance(received.error, StreamError)
    assert received.error.code == ErrorCodes.CANCEL
    # The server answered before it saw the reset: the client drops the frames of the
    # stream it reset (and gives the connection window back), the connection goes on.
    pair.server._queue_headers(1, [(b":status", b"200")], False)
    pair.server._out.append(b"\x00\x00\x04\x00\x00\x00\x00\x00\x01data")
    window = pair.client._recv_window
    pair.pump()
    assert pair.client.error is None
    assert pair.client._recv_window + pair.client._recv_unacked == window
    assert pair.open(b"again") is not None
    assert [s.id for s in pair.requests] == [1, 3]


def test_goaway_refuses_the_client_streams_it_does_not_cover() -> None:
    pair = Pair()
    first = pair.open(b"", end_stream=False)
    second = pair.open(b"", end_stream=False)
    pair.server._highest = 1  # as if the second had not arrived yet
    pair.server._queue_goaway(ErrorCodes.NO_ERROR)
    pair.pump()
    assert first.error is None
    assert second.error is not None
    assert second.error.code == ErrorCodes.REFUSED_STREAM
    assert not pair.client.accepting


def test_a_connection_error_on_either_side_sends_goaway_with_its_code() -> None:
    for role in (True, False):
        conn = H2Connection(client=role)
        if not role:
            conn.process(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        conn.process(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # SETTINGS
        conn._out.clear()
        conn.process(b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x7f\xff\xff\xff")  # window overflow
        assert conn.error is not None
        (goaway,) = conn._out
        assert goaway[3] == 0x7  # GOAWAY
        assert int.from_bytes(goaway[13:17], "big") == ErrorCodes.FLOW_CONTROL_ERROR
