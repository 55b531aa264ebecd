"""HTTP/1.1 connections of the native server.

A strict request parser of our own (RFC 9112) and responses written as bytes:
a whole response (head and body) leaves in one write. The parser refuses what
it does not understand rather than guessing (bare LF, obsolete line folding,
both ``Content-Length`` and ``Transfer-Encoding``, codings other than chunked),
so that no two readers of one byte stream can see different requests.

Timeouts cost nothing per request: a connection only records the time by which
something must arrive (``deadline``); the server's clock task cancels
connections past it (``expire``).
"""

from __future__ import annotations

import contextlib
import http
import math
import re
from time import monotonic
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
from anyio.abc import ByteStream

from .._protocol import RawHeaders, ResponseStart
from .._server_core import Disconnected
from ._dispatch import Dispatcher, Request
from ._inline import drive

if TYPE_CHECKING:
    from . import ServerLimits

_READ = 65536
_DRAIN_LIMIT = 1 << 20
"""Unread request body we are willing to skip to keep a connection alive."""
_CHUNK_LINE_LIMIT = 4096
"""A chunk-size line (with its extensions) longer than this is refused."""

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_VALUE = rb"(?:[\x21-\x7e\x80-\xff](?:[\x20\x09\x21-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])")
_FIELD = rb"(" + _TOKEN + rb"):[ \t]*(" + _VALUE + rb")[ \t]*\r\n"
_FIELDS = re.compile(rb"(?:" + _FIELD + rb")*")
_FIELD_RE = re.compile(_FIELD)
_RESPONSE_FIELDS = re.compile(rb"(?:" + _TOKEN + rb": " + _VALUE + rb"\r\n)*")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;[\x09\x20-\x7e\x80-\xff]*)?")
_DIGITS = re.compile(rb"[0-9]{1,18}")
_EMPTY_LINES = re.compile(rb"(?:\r\n)*")


class _ConnectionGone(Exception):
    pass


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _BadBody(Exception):
    """The request body is malformed (chunked framing): the connection cannot go on."""


_STATUS_LINES = {
    status.value: b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode())
    for status in http.HTTPStatus
}


def _status_line(status: int) -> bytes:
    """The status line with the standard reason phrase (some clients reject an empty one)."""
    line = _STATUS_LINES.get(status)
    if line is None:
        if not 100 <= status <= 999:
            raise ValueError(f"invalid HTTP status {status}")
        line = b"HTTP/1.1 %d \r\n" % status
    return line


_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# Body framing of a request.
_NO_BODY = 0
_LENGTH = 1
_CHUNKED = 2
# Chunked decoding states.
_CHUNK_HEAD = 0
_CHUNK_DATA = 1
_CHUNK_END = 2
_TRAILERS = 3


class H1Connection:
    """Serves requests one after another on one connection (keep-alive; pipelined
    requests wait their turn in the read buffer)."""

    def __init__(
        self,
        stream: ByteStream,
        dispatcher: Dispatcher,
        limits: ServerLimits,
        *,
        scheme: str,
        client: tuple[str, int] | None,
        server: tuple[str, int] | None,
    ) -> None:
        self._stream = stream
        self._dispatcher = dispatcher
        self._limits = limits
        self._scheme = scheme
        self._client = client
        self._server = server
        self._buf = b""
        self._eof = False
        self.busy = False
        self._closing = False
        self._scope: anyio.CancelScope | None = None
        self.deadline = math.inf
        """When (``time.monotonic``) the head being waited for must be complete (``expire``
        ends the connection past it); infinite while a request is served."""
        # The request body being read.
        self._body = _NO_BODY
        self._remaining = 0
        self._chunk_state = _CHUNK_HEAD
        self._trailer_bytes = 0
        self._body_broken = False
        self._body_seen = False

    # -- lifecycle -----------------------------------------------------------------

    def begin_shutdown(self) -> None:
        """Finish the request in progress, then close; close at once if idle."""
        self._closing = True
        if not self.busy and self._scope is not None:
            self._scope.cancel()

    def expire(self) -> None:
        """Called past ``deadline``: a head did not arrive in time; the connection ends."""
        if not self.busy and self._scope is not None:
            self._scope.cancel()

    async def run(self, initial: bytes, head_deadline: float | None = None) -> None:
        """Serves requests until the client leaves, a limit is hit or the server shuts down.

        ``head_deadline``: when the first request head must be complete (the header
        timeout counts from the moment the connection was accepted).
        """
        self._buf = initial
        # Deadlines are kept on the monotonic clock (cheaper than the event loop's).
        if head_deadline is None:
            self.deadline = monotonic() + self._limits.header_timeout
        else:
            self.deadline = monotonic() + (head_deadline - anyio.current_time())
        with anyio.CancelScope() as scope:
            self._scope = scope
            if self._closing:
                return
            await self._serve()

    async def _serve(self) -> None:
        limits = self._limits
        first = True
        while not self._closing:
            if not first:
                if self._buf:
                    self.deadline = monotonic() + limits.header_timeout
                else:
                    self.deadline = monotonic() + limits.idle_timeout
            first = False
            try:
                request = await self._read_head()
            except _BadRequest as e:
                await self._refuse(e.status, str(e))
                return
            except _ConnectionGone:
                return
            if request is None:
                return
            self.busy = True
            self.deadline = math.inf
            try:
                io = H1ServerIO(self, request)
                await self._handle(request, io)
            except _ConnectionGone:
                return
            finally:
                self.busy = False
            if io.close or self._closing or not await self._finish_body():
                return

    # -- reading -----------------------------------------------------------------------

    async def _fill(self) -> int:
        """Reads more bytes into the buffer; returns how many (0 at the end of the stream)."""
        if self._eof:
            return 0
        try:
            data = await self._stream.receive(_READ)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            data = b""
        if not data:
            self._eof = True
            return 0
        if self._buf:
            self._buf += data
        else:
            self._buf = data
        return len(data)

    async def _read_head(self) -> _Head | None:
        """The next request head, or None when the client closed the connection between
        requests. Raises ``_BadRequest`` for a head that must be refused."""
        limit = self._limits.max_header_bytes
        scanned = 0
        while True:
            buf = self._buf
            if buf[:2] == b"\r\n":
                # Empty lines (CRLF) before a request line are ignored (RFC 9112, 2.2);
                # a bare CR or LF among them is left to make the request line malformed.
                buf = self._buf = buf[_EMPTY_LINES.match(buf).end() :]  # type: ignore[union-attr]
                scanned = 0
            end = buf.find(b"\r\n\r\n", scanned)
            if end >= 0:
                if end + 4 > limit:
                    raise _BadRequest(431, "request header fields too large")
                self._buf = buf[end + 4 :]
                return self._parse_head(buf[: end + 2])
            if len(buf) > limit:
                raise _BadRequest(431, "request header fields too large")
            if b"\n\n" in buf or b"\n\r\n" in buf:
                raise _BadRequest(400, "malformed request head (bare LF)")
            scanned = max(0, len(buf) - 3)
            if buf and self.deadline == math.inf:
                self.deadline = monotonic() + self._limits.header_timeout
            had = len(buf)
            if not await self._fill():
                if had:
                    raise _ConnectionGone  # cut off in the middle of a head
                return None
            if not had:
                # The first byte of a head: from now on the header timeout counts.
                self.deadline = min(self.deadline, monotonic() + self._limits.header_timeout)

    def _parse_head(self, head: bytes) -> _Head:
        """Parses a request head (ending with CRLF, without the blank line) and sets up
        reading its body."""
        parsed = _HEADS.get(head)
        if parsed is None:
            parsed = _parse(head)
            if len(head) <= _HEAD_CACHE_BYTES:
                if len(_HEADS) >= _HEAD_CACHE_SIZE:
                    _HEADS.clear()
                _HEADS[head] = parsed
        method, target, headers, version, keep_alive, expect_continue, body, length = parsed
        self._body = body
        if body == _LENGTH:
            self._remaining = length
        elif body == _CHUNKED:
            self._chunk_state = _CHUNK_HEAD
            self._trailer_bytes = 0
        self._body_broken = False
        self._body_seen = False
        return _Head(method, target, list(headers), version, keep_alive, expect_continue)

    async def _read_body(self) -> bytes:
        """The next piece of the request body; ``b""`` at its end. Raises ``_BadBody`` for
        broken chunked framing and ``_ConnectionGone`` when the client left mid-body."""
        if self._body == _LENGTH:
            if not self._buf and not await self._fill():
                raise _ConnectionGone
            self._body_seen = True
            buf = self._buf
            remaining = self._remaining
            if len(buf) <= remaining:
                self._buf = b""
                self._remaining = remaining - len(buf)
                if not self._remaining:
                    self._body = _NO_BODY
                return buf
            self._buf = buf[remaining:]
            self._remaining = 0
            self._body = _NO_BODY
            return buf[:remaining]
        if self._body == _CHUNKED:
            return await self._read_chunked()
        return b""

    async def _read_chunked(self) -> bytes:
        while True:
            state = self._chunk_state
            buf = self._buf
            if state == _CHUNK_DATA:
                if not buf:
                    if not await self._fill():
                        raise _ConnectionGone
                    buf = self._buf
                self._body_seen = True
                remaining = self._remaining
                if len(buf) <= remaining:
                    self._buf = b""
                    data = buf
                else:
                    self._buf = buf[remaining:]
                    data = buf[:remaining]
                self._remaining = remaining - len(data)
                if not self._remaining:
                    self._chunk_state = _CHUNK_END
                return data
            if state == _CHUNK_END:
                if len(buf) < 2:
                    if not await self._fill():
                        raise _ConnectionGone
                    continue
                if buf[:2] != b"\r\n":
                    self._body_broken = True
                    raise _BadBody
                self._buf = buf[2:]
                self._chunk_state = _CHUNK_HEAD
                continue
            end = buf.find(b"\r\n")
            if end < 0:
                if state == _CHUNK_HEAD:
                    # (Not counting the line's CR, if that has come.)
                    too_long = len(buf) - buf.endswith(b"\r") > _CHUNK_LINE_LIMIT
                else:
                    too_long = len(buf) > self._limits.max_header_bytes - self._trailer_bytes
                if too_long or b"\n" in buf:
                    self._body_broken = True
                    raise _BadBody
                if not await self._fill():
                    raise _ConnectionGone
                continue
            line = buf[:end]
            self._buf = buf[end + 2 :]
            self._body_seen = True
            if state == _CHUNK_HEAD:
                match = _CHUNK_SIZE.fullmatch(line)
                if match is None or end > _CHUNK_LINE_LIMIT:
                    self._body_broken = True
                    raise _BadBody
                size = int(match.group(1), 16)
                if size:
                    self._remaining = size
                    self._chunk_state = _CHUNK_DATA
                else:
                    self._chunk_state = _TRAILERS
                continue
            # Trailer fields: checked and bounded, then ignored.
            if not line:
                self._body = _NO_BODY
                return b""
            self._trailer_bytes += end + 2
            if (
                self._trailer_bytes > self._limits.max_header_bytes
                or _FIELD_RE.fullmatch(line + b"\r\n") is None
            ):
                self._body_broken = True
                raise _BadBody

    # -- writing -----------------------------------------------------------------------

    async def _send(self, data: bytes) -> None:
        try:
            await self._stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            raise Disconnected from None

    async def _refuse(self, status: int, message: str) -> None:
        """Answers a request that cannot be served (bad or oversize head); the connection
        closes after it."""
        body = f"{status} {message}\n".encode()
        head = _status_line(status) + (
            b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
        )
        with contextlib.suppress(Disconnected):
            await self._send(head + body)

    # -- one request ---------------------------------------------------------------------

    async def _handle(self, head: _Head, io: H1ServerIO) -> None:
        request = Request(
            method=head.method,
            target=head.target,
            raw_headers=head.headers,
            http_version=head.version,
            scheme=self._scheme,
            client=self._client,
            server=self._server,
        )
        try:
            await drive(self._dispatcher.handle(request, io, trailers=False))
        except Disconnected:
            raise _ConnectionGone from None
        if io.state != _DONE:
            if io.state == _IDLE:
                await io.send_start(ResponseStart(500, [(b"content-length", b"0")]), b"", True)
            else:
                raise _ConnectionGone  # a response cut short cannot be framed: drop the connection

    async def _finish_body(self) -> bool:
        """Skips what is left of the request body (within limits); False if the connection
        cannot serve another request."""
        if self._body == _NO_BODY:
            return True
        if self._body_broken:
            return False
        drained = 0
        try:
            with anyio.fail_after(self._limits.header_timeout):
                while self._body != _NO_BODY:
                    if drained > _DRAIN_LIMIT:
                        return False
                    drained += len(await self._read_body())
        except (TimeoutError, _ConnectionGone, _BadBody):
            return False
        return True


_Parsed = tuple[str, bytes, tuple[tuple[bytes, bytes], ...], str, bool, bool, int, int]
"""method, target, headers, version, keep-alive, expects 100-continue, body framing, length"""
_HEADS: dict[bytes, _Parsed] = {}
"""Heads parsed lately, by their bytes: clients tend to send the same few heads again
and again, and parsing the same bytes gives the same result."""
_HEAD_CACHE_SIZE = 256
_HEAD_CACHE_BYTES = 2048


def _parse(head: bytes) -> _Parsed:
    """Parses a request head (ending with CRLF, without the blank line); raises
    ``_BadRequest`` for a head to refuse."""
    line_end = head.index(b"\r\n")
    match = _REQUEST_LINE.fullmatch(head, 0, line_end)
    if match is None:
        raise _BadRequest(400, "malformed request line")
    method, target, major, minor = match.groups()
    if major != b"1" or minor not in (b"0", b"1"):
        raise _BadRequest(505, "HTTP version not supported")
    http10 = minor == b"0"
    fields_start = line_end + 2
    if _FIELDS.fullmatch(head, fields_start) is None:
        raise _BadRequest(400, "malformed header field")
    headers: RawHeaders = []
    append = headers.append
    content_length: bytes | None = None
    transfer_encoding: bytes | None = None
    hosts = 0
    keep_alive = not http10
    expect_continue = False
    for name, value in _FIELD_RE.findall(head, fields_start):
        name = name.lower()
        append((name, value))
        if name == b"content-length":
            if content_length is not None and value != content_length:
                raise _BadRequest(400, "conflicting Content-Length")
            content_length = value
        elif name == b"transfer-encoding":
            transfer_encoding = (
                value if transfer_encoding is None else transfer_encoding + b"," + value
            )
        elif name == b"host":
            hosts += 1
        elif name == b"connection":
            # (HTTP/1.0 keep-alive is not offered: such connections close.)
            if b"close" in (t.strip() for t in value.lower().split(b",")):
                keep_alive = False
        elif name == b"expect" and not expect_continue:
            # Expect = #expectation (RFC 9110 10.1.1): 100-continue may be one of a list.
            expect_continue = b"100-continue" in (t.strip() for t in value.lower().split(b","))
    # RFC 9112 3.2: several Host fields are refused in any request, a missing one in
    # HTTP/1.1 ones.
    if hosts > 1:
        raise _BadRequest(400, "several Host headers")
    if not hosts and not http10:
        raise _BadRequest(400, "missing Host header")
    length = 0
    if transfer_encoding is not None:
        if http10:
            raise _BadRequest(400, "Transfer-Encoding in an HTTP/1.0 request")
        if content_length is not None:
            raise _BadRequest(400, "both Content-Length and Transfer-Encoding")
        if transfer_encoding.strip(b" \t").lower() != b"chunked":
            raise _BadRequest(501, "only Transfer-Encoding: chunked is supported")
        body = _CHUNKED
    elif content_length is not None:
        if _DIGITS.fullmatch(content_length) is None:
            raise _BadRequest(400, "malformed Content-Length")
        length = int(content_length)
        body = _LENGTH if length else _NO_BODY
    else:
        body = _NO_BODY
    return (
        method.decode("ascii"),
        target,
        tuple(headers),
        "1.0" if http10 else "1.1",
        keep_alive,
        expect_continue and not http10 and body != _NO_BODY,
        body,
        length,
    )


class _Head:
    __slots__ = ("expect_continue", "headers", "keep_alive", "method", "target", "version")

    def __init__(
        self,
        method: str,
        target: bytes,
        headers: RawHeaders,
        version: str,
        keep_alive: bool,
        expect_continue: bool,
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.version = version
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue


# Response states.
_IDLE = 0
_BODY = 1
_DONE = 2
# Response body framing.
_FRAME_CHUNKED = 0
_FRAME_LENGTH = 1
_FRAME_CLOSE = 2
_FRAME_NONE = 3


class H1ServerIO:
    """``ServerIO`` for one HTTP/1.1 request."""

    __slots__ = (
        "_conn",
        "_continue",
        "_frame",
        "_head",
        "_left",
        "_trailers",
        "close",
        "state",
    )

    def __init__(self, conn: H1Connection, head: _Head) -> None:
        self._conn = conn
        self._head = head
        self._continue = head.expect_continue
        self._trailers = False
        self._frame = _FRAME_CHUNKED
        self._left = 0
        self.state = _IDLE
        self.close = not head.keep_alive
        """The connection ends after this response."""

    # -- request body --------------------------------------------------------------------

    async def receive(self) -> bytes:
        conn = self._conn
        if self._continue:
            self._continue = False
            if not conn._body_seen and not conn._buf and self.state == _IDLE:
                await conn._send(_CONTINUE)
        try:
            return await conn._read_body()
        except (_ConnectionGone, _BadBody):
            self.close = True
            raise Disconnected from None

    async def wait_disconnect(self) -> None:
        conn = self._conn
        buffered = 0
        while not conn._eof:
            if buffered > conn._limits.max_header_bytes:
                # A pipelining client sent plenty already; stop reading ahead.
                await anyio.sleep_forever()
            buffered += await conn._fill()

    # -- response ------------------------------------------------------------------------

    def _waiting_for_continue(self) -> bool:
        conn = self._conn
        return self._continue and not conn._body_seen and not conn._buf

    async def send_start(self, start: ResponseStart, body: bytes, end: bool) -> None:
        conn = self._conn
        status = start.status
        whole = end and not start.trailers
        self._trailers = start.trailers
        no_body = status < 200 or status in (204, 304) or self._head.method == "HEAD"
        length: bytes | None = None
        fields: list[bytes] = []
        lines = 0
        for name, value in start.headers:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                continue  # the framing is ours to choose
            elif name == b"connection" and b"close" in value.lower():
                self.close = True
            fields += (name, b": ", value, b"\r\n")
            lines += 1
        block = b"".join(fields)
        # Each field is one valid line: no line break inside a name or value (no injection).
        if _RESPONSE_FIELDS.fullmatch(block) is None or block.count(b"\n") != lines:
            raise ValueError("invalid response header field")
        parts = [_status_line(status), block]
        if no_body:
            frame = _FRAME_NONE
        elif length is not None:
            frame = _FRAME_LENGTH
            if _DIGITS.fullmatch(length) is None:
                raise ValueError(f"invalid content-length {length!r}")
            self._left = int(length)
        elif whole:
            frame = _FRAME_LENGTH
            self._left = len(body)
            parts.append(b"content-length: %d\r\n" % len(body))
        elif self._head.version == "1.0":
            frame = _FRAME_CLOSE
            self.close = True
        else:
            frame = _FRAME_CHUNKED
            parts.append(b"transfer-encoding: chunked\r\n")
        self._frame = frame
        if self._waiting_for_continue():
            # Answered without asking for the body the client holds back (Expect:
            # 100-continue), which it may or may not send now: close.
            self.close = True
        if conn._closing:
            self.close = True
        if self.close:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        head = b"".join(parts)
        self.state = _BODY
        data = self._frame_body(body, whole)
        if whole:
            self._finish()
        await conn._send(head + data if data else head)

    def _frame_body(self, body: bytes, end: bool) -> bytes:
        frame = self._frame
        if frame == _FRAME_CHUNKED:
            data = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
            if end and not self._trailers:
                data += b"0\r\n\r\n"
            return data
        if frame == _FRAME_LENGTH:
            self._left -= len(body)
            if self._left < 0:
                raise ValueError("response body longer than its content-length")
            if end and self._left:
                self.close = True  # shorter than announced: the connection cannot go on
                raise ValueError("response body shorter than its content-length")
            return body
        if frame == _FRAME_CLOSE:
            return body
        return b""

    def _finish(self) -> None:
        self.state = _DONE

    async def send_body(self, body: bytes, end: bool) -> None:
        if self.state != _BODY:
            raise RuntimeError("send_body before send_start, or after the response ended")
        last = end and not self._trailers
        data = self._frame_body(body, last)
        if last:
            self._finish()
        if data:
            await self._conn._send(data)
        if not end:
            # A stream of sends that the kernel takes at once would never yield.
            await anyio.lowlevel.checkpoint()

    async def send_trailers(self, trailers: RawHeaders) -> None:
        # Only reached by plain ASGI apps: trailers go in the last chunk.
        if self.state != _BODY:
            raise RuntimeError("send_trailers before send_start, or after the response ended")
        self._finish()
        if self._frame == _FRAME_CHUNKED:
            fields = b"".join(name + b": " + value + b"\r\n" for name, value in trailers)
            if _RESPONSE_FIELDS.fullmatch(fields) is None or fields.count(b"\n") != len(trailers):
                raise ValueError("invalid trailer field")
            await self._conn._send(b"0\r\n" + fields + b"\r\n")
