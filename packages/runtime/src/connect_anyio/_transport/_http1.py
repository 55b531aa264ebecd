"""HTTP/1.1 exchanges on our own connection pool and codec (always half-duplex).

Why not httpcore's pool: it assigns requests to connections under one pool-wide
lock and re-scans every connection and queued request whenever any request
starts or ends, so 16 concurrent calls ran at about the speed of one (1.08k
calls/s for a raw httpcore pool against a server that does 10k). Here a call
takes an idle connection of its origin (or opens one, up to ``max_connections``
in all), uses it alone, and gives it back; the only shared state is changed
between awaits, so no lock is held while bytes move, and a caller waits only
when every connection is busy.

The codec is small on purpose: a request leaves in one write (head and body
together for unary calls), a response head is split with ``bytes`` methods.
It supports what a Connect/gRPC-Web client meets: ``Content-Length``,
``chunked`` and read-until-close bodies, informational responses, keep-alive.
It is strict where leniency enables request smuggling (both ``Content-Length``
and ``Transfer-Encoding``, conflicting lengths, line breaks in header values).
"""

from __future__ import annotations

import contextlib
import math
import re
import select
import ssl
import time
from collections import deque
from collections.abc import AsyncIterable
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import ByteStream, SocketAttribute, TaskGroup
from anyio.streams.tls import TLSStream

from . import (
    ClosedDuringConnect,
    LocalProtocolError,
    Origin,
    RemoteProtocolError,
    guard_body,
    map_errors,
)

if TYPE_CHECKING:
    from .._protocol import ClientRequest, RawHeaders

MAX_HEAD_BYTES = 100 * 1024
"""The largest response head (status line and headers) accepted."""
MAX_CHUNK_LINE = 4 * 1024
"""The longest chunk-size line (with extensions) or trailer section line accepted."""
READ_SIZE = 65536

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(rb"\r?\n")
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_UNSAFE_VALUE = re.compile(rb"[\x00\r\n]")
_FIELD_START = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+:")
_TARGET = re.compile(rb"[\x21-\x7e]+")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")

# Body framing of a response.
_NONE, _LENGTH, _CHUNKED, _UNTIL_CLOSE, _DONE = range(5)


def _protocol_error(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message)


_LINES: dict[tuple[bytes, bytes], bytes] = {}
"""Header lines already checked and formatted (most fields repeat with every call)."""
_MAX_CACHED = 4096


def _line(field: tuple[bytes, bytes]) -> bytes:
    name, value = field
    if not _TOKEN.fullmatch(name):
        raise LocalProtocolError(f"invalid header name {name[:100]!r}")
    if _UNSAFE_VALUE.search(value):
        raise LocalProtocolError("invalid header value (line break or NUL)")
    line = b"%s: %s\r\n" % field
    if len(_LINES) >= _MAX_CACHED:
        _LINES.clear()
    _LINES[field] = line
    return line


def request_head(
    method: str, target: str, host: bytes, headers: RawHeaders, framing: bytes
) -> bytes:
    """The request line and headers; ``framing`` is the Content-Length or Transfer-Encoding line."""
    if not (method.isascii() and target.isascii()):
        # (Not sent with each such character replaced by "?", which starts a query.)
        raise LocalProtocolError(f"invalid request line (not ASCII): {method} {target!r}")
    m = method.encode("ascii")
    t = target.encode("ascii")
    if not _TOKEN.fullmatch(m) or not _TARGET.fullmatch(t):
        raise LocalProtocolError(f"invalid request line: {method} {target!r}")
    lines = [b"%s %s HTTP/1.1\r\nhost: %s\r\n" % (m, t, host)]
    cached = _LINES.get
    lines.extend([cached(field) or _line(field) for field in headers])
    lines.append(framing)
    return b"".join(lines)


_Head = tuple[int, tuple[tuple[bytes, bytes], ...], bool, "int | None", bool]
_HEADS: dict[bytes, _Head] = {}
"""Response heads already parsed: a server answers every call with the same few
(until its Date header changes), so most heads cost one lookup."""


def parse_head(head: bytes) -> _Head:
    """Status, fields, keep-alive, Content-Length and chunked of a response head (without
    its blank line); a malformed head raises ``RemoteProtocolError``."""
    if b"\x00" in head:
        raise _protocol_error("NUL in response head")
    crlf = head.count(b"\r\n")
    if head.count(b"\n") == crlf and head.count(b"\r") == crlf:
        lines = head.split(b"\r\n")
    else:
        lines = _LINE_END.split(head)
        if any(b"\r" in line for line in lines):
            raise _protocol_error("bare CR in response head")
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if (
        version not in (b"HTTP/1.1", b"HTTP/1.0")
        or len(code) != 3
        or not code.isdigit()
        or rest[3:4] not in (b"", b" ")
    ):
        raise _protocol_error(f"malformed status line {lines[0][:100]!r}")
    status = int(code)
    if status < 100:
        raise _protocol_error(f"malformed status line {lines[0][:100]!r}")
    headers: RawHeaders = []
    length: int | None = None
    chunked = False
    keep_alive = version == b"HTTP/1.1"
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            # obs-fold: a continuation of the previous value (RFC 9112 5.2).
            if not headers:
                raise _protocol_error("response head starts with a continuation line")
            name, value = headers[-1]
            headers[-1] = (name, (value + b" " + line.strip(b" \t")).strip(b" "))
            continue
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise _protocol_error(f"malformed header line {line[:100]!r}")
        name = name.lower()
        value = value.strip(b" \t")
        headers.append((name, value))
        if name == b"content-length":
            for part in value.split(b","):
                part = part.strip(b" \t")
                if (
                    not part.isdigit()
                    or len(part) > 18  # (int() refuses over 4300 digits; no body is that long)
                    or (length is not None and int(part) != length)
                ):
                    raise _protocol_error(f"invalid content-length {value[:100]!r}")
                length = int(part)
        elif name == b"transfer-encoding":
            codings = [c.strip(b" \t").lower() for c in value.split(b",")]
            if codings != [b"chunked"] or chunked:
                raise _protocol_error(f"unsupported transfer-encoding {value[:100]!r}")
            chunked = True
        elif name == b"connection" and b"close" in [
            t.strip(b" \t").lower() for t in value.split(b",")
        ]:
            keep_alive = False
    if status == 101:
        raise _protocol_error("unexpected 101 Switching Protocols")
    if chunked and length is not None and status >= 200:
        raise _protocol_error("both content-length and transfer-encoding")
    return status, tuple(headers), keep_alive, length, chunked


class _Connection:
    """One HTTP/1.1 connection: one exchange at a time, reading and writing in one task."""

    __slots__ = (
        "_buffer",
        "_framing",
        "_poll",
        "_remaining",
        "_sock",
        "_stream",
        "expires",
        "keep_alive",
        "origin",
    )

    def __init__(self, stream: ByteStream, origin: Origin) -> None:
        self._stream = stream
        self.origin = origin
        self._sock: Any = stream.extra(SocketAttribute.raw_socket, None)
        self._poll: Any = None
        if self._sock is not None and hasattr(select, "poll"):
            self._poll = select.poll()
            self._poll.register(self._sock, select.POLLIN)
        self._buffer = b""
        self._framing = _DONE
        self._remaining = 0
        self.expires = math.inf
        self.keep_alive = False

    def usable(self) -> bool:
        """Whether an idle connection may carry another request: the server has sent
        nothing since (bytes, or the end of the connection, mean it is leaving)."""
        if self._buffer:
            return False
        poll = self._poll
        try:
            if poll is not None:
                return not poll.poll(0)
            if self._sock is not None:
                readable, _, _ = select.select([self._sock], [], [], 0)
                return not readable
        except (OSError, ValueError):
            return False
        return True

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await self._stream.aclose()

    # -- sending ----------------------------------------------------------------------

    async def send(self, data: bytes) -> bool:
        """Sends request bytes; False if the connection broke (the server may have
        answered early and closed: the response is read anyway, as httpcore did)."""
        try:
            await self._stream.send(data)
        except (OSError, anyio.BrokenResourceError):
            self.keep_alive = False
            return False
        return True

    async def send_chunked(self, head: bytes, body: AsyncIterable[bytes]) -> None:
        """Sends the head, then ``body`` in chunked encoding (one write per chunk)."""
        if not await self.send(head):
            return
        chunks = guard_body(body)
        try:
            async for chunk in chunks:
                if chunk and not await self.send(b"%x\r\n%s\r\n" % (len(chunk), chunk)):
                    return
            await self.send(b"0\r\n\r\n")
        finally:
            await chunks.aclose()

    # -- receiving --------------------------------------------------------------------

    async def _more(self, what: str) -> bytes:
        try:
            return await self._stream.receive(READ_SIZE)
        except anyio.EndOfStream:
            raise _protocol_error(f"server disconnected {what}") from None

    async def read_head(self, method: str) -> tuple[int, RawHeaders]:
        """The final response head (informational ones are skipped); sets the body framing."""
        while True:
            buf = self._buffer
            searched = 0
            while True:
                match = _HEAD_END.search(buf, max(0, searched - 3))
                if match is not None:
                    if match.start() > MAX_HEAD_BYTES:
                        raise _protocol_error("response head larger than 100 KiB")
                    break
                # (Up to 3 bytes of the blank line may have come: the same heads are
                # refused wherever the stream is cut.)
                if len(buf) > MAX_HEAD_BYTES + 3:
                    raise _protocol_error("response head larger than 100 KiB")
                searched = len(buf)
                buf += await self._more(
                    "without sending a response" if not buf else "in the middle of a response head"
                )
            self._buffer = buf[match.end() :]
            status, headers = self._parse_head(buf[: match.start()], method)
            if status >= 200:
                return status, headers

    def _parse_head(self, head: bytes, method: str) -> tuple[int, RawHeaders]:
        parsed = _HEADS.get(head)
        if parsed is None:
            parsed = parse_head(head)
            if len(head) <= 4096:
                if len(_HEADS) >= 256:
                    _HEADS.clear()
                _HEADS[head] = parsed
        status, fields, keep_alive, length, chunked = parsed
        headers = list(fields)
        if status < 200:
            return status, headers
        self.keep_alive = keep_alive
        if status in (204, 304) or method == "HEAD":
            self._framing = _DONE
        elif chunked:
            self._framing = _CHUNKED
            self._remaining = 0
        elif length is not None:
            self._framing = _LENGTH if length else _DONE
            self._remaining = length
        else:
            self._framing = _UNTIL_CLOSE
            self.keep_alive = False
        return status, headers

    async def read_body(self) -> bytes:
        """The next piece of the response body; ``b""`` at its end."""
        framing = self._framing
        if framing == _LENGTH:
            buf = self._buffer
            if not buf:
                buf = await self._more("before the end of the response body")
            remaining = self._remaining
            if len(buf) <= remaining:
                self._buffer = b""
                data = buf
            else:
                data, self._buffer = buf[:remaining], buf[remaining:]
            remaining -= len(data)
            self._remaining = remaining
            if not remaining:
                self._framing = _DONE
            return data
        if framing == _CHUNKED:
            return await self._read_chunk()
        if framing == _UNTIL_CLOSE:
            if self._buffer:
                data, self._buffer = self._buffer, b""
                return data
            try:
                return await self._stream.receive(READ_SIZE)
            except anyio.EndOfStream:
                self._framing = _DONE
                return b""
        return b""

    async def read_all(self) -> bytes:
        """The rest of the response body."""
        if self._framing == _LENGTH and len(self._buffer) == self._remaining:
            # The common case: the whole body arrived with the head.
            data, self._buffer = self._buffer, b""
            self._framing = _DONE
            return data
        parts: list[bytes] = []
        while True:
            data = await self.read_body()
            if not data:
                return b"".join(parts)
            parts.append(data)

    async def _line(self, crlf: bool) -> bytes:
        """The next line of a chunked body, without its end. ``crlf``: only CRLF ends it
        (the chunk framing, as RFC 9112 7.1 writes it); else a bare LF does too (trailer
        lines, read as head lines are)."""
        while True:
            buf = self._buffer
            end = buf.find(b"\n")
            if end >= 0:
                line, self._buffer = buf[:end], buf[end + 1 :]
                if line.endswith(b"\r"):
                    line = line[:-1]
                elif crlf:
                    raise _protocol_error("chunk-size line or chunk data not ended by CRLF")
                if len(line) > MAX_CHUNK_LINE:
                    raise _protocol_error("chunk-size or trailer line too long")
                return line
            # (Whether or not the line's CR has come, the same lines are refused.)
            if len(buf) - buf.endswith(b"\r") > MAX_CHUNK_LINE:
                raise _protocol_error("chunk-size or trailer line too long")
            self._buffer = buf + await self._more("in the middle of a chunked body")

    async def _read_chunk(self) -> bytes:
        while True:
            if self._remaining > 0:
                buf = self._buffer
                if not buf:
                    buf = await self._more("in the middle of a chunked body")
                n = min(len(buf), self._remaining)
                data, self._buffer = buf[:n], buf[n:]
                self._remaining -= n
                if not self._remaining:
                    self._remaining = -1  # the CRLF after the chunk data is due
                return data
            if self._remaining < 0:
                if await self._line(True):
                    raise _protocol_error("chunk data longer than its size")
                self._remaining = 0
            # chunk-size [ BWS ";" chunk-ext ] (whitespace before the end of the line too)
            size_text = (await self._line(True)).split(b";", 1)[0].rstrip(b" \t")
            if not _CHUNK_SIZE.fullmatch(size_text):
                raise _protocol_error(f"invalid chunk size {size_text[:100]!r}")
            size = int(size_text, 16)
            if size == 0:
                # The trailer section ends with an empty line. HTTP/1.1 trailers are
                # checked, not passed on (Connect and gRPC-Web send theirs in the body).
                total = 0
                while line := await self._line(False):
                    if not (
                        _FIELD_START.match(line) or (total and line[:1] in (b" ", b"\t"))
                    ) or _UNSAFE_VALUE.search(line):
                        raise _protocol_error(f"malformed trailer line {line[:100]!r}")
                    total += len(line)
                    if total > MAX_HEAD_BYTES:
                        raise _protocol_error("trailer section larger than 100 KiB")
                self._framing = _DONE
                return b""
            self._remaining = size

    @property
    def finished(self) -> bool:
        """The response ended and the connection may carry another exchange."""
        return self._framing == _DONE and self.keep_alive and not self._buffer


class HTTP1Response:
    """A response being read; owns its connection until the body ends or ``aclose``."""

    __slots__ = ("_conn", "_pool", "headers", "status")

    def __init__(self, pool: HTTP1Transport, conn: _Connection, status: int, headers: RawHeaders):
        self._pool = pool
        self._conn: _Connection | None = conn
        self.status = status
        self.headers = headers

    async def receive(self) -> bytes:
        conn = self._conn
        if conn is None:
            return b""
        try:
            with map_errors():
                data = await conn.read_body()
        except BaseException:
            self._conn = None
            await self._pool.discard(conn)
            raise
        if not data:
            self._conn = None
            await self._pool.release(conn)
        return data

    def trailers(self) -> RawHeaders | None:
        return None

    async def aclose(self) -> None:
        """Releases the connection; one closed before the end of the body is dropped."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._pool.discard(conn)


class HTTP1Transport:
    """A pool of HTTP/1.1 connections: at most ``max_connections`` open in all; idle ones
    are reused most recent first and closed after ``keepalive_expiry`` seconds."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext | None,
        max_connections: int,
        keepalive_expiry: float | None,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._ssl_context = ssl_context
        self._max = max_connections
        self._expiry = math.inf if keepalive_expiry is None else keepalive_expiry
        self._idle: dict[Origin, list[_Connection]] = {}
        self._connections: set[_Connection] = set()
        self._opening = 0
        self._waiters: deque[anyio.Event] = deque()
        self._next_prune = 0.0
        self._hosts: dict[Origin, bytes] = {}
        self._closes = 0
        """How many times ``aclose`` ran (a connect that straddles one is dropped)."""

    # -- the pool -----------------------------------------------------------------------

    @property
    def open_connections(self) -> int:
        return len(self._connections) + self._opening

    async def _acquire(self, origin: Origin) -> _Connection:
        woken = False
        while True:
            now = time.monotonic()
            if now >= self._next_prune:
                await self._prune(now)
            idle = self._idle.get(origin)
            while idle:
                conn = idle.pop()
                if conn.expires > now and conn.usable():
                    return conn
                await self.discard(conn)
            if self.open_connections < self._max:
                return await self._open(origin)
            victim = self._oldest_idle()
            if victim is not None:
                await self.discard(victim)
                continue
            event = anyio.Event()
            if woken:
                self._waiters.appendleft(event)  # keep our place in the queue
            else:
                self._waiters.append(event)
            try:
                await event.wait()
            except BaseException:
                if event.is_set():
                    self._wake()  # our turn goes to the next waiter
                else:
                    self._waiters.remove(event)
                raise
            woken = True

    async def _open(self, origin: Origin) -> _Connection:
        self._opening += 1
        closes = self._closes
        try:
            stream = await self._connect(origin)
        except BaseException:
            self._opening -= 1
            self._wake()
            raise
        self._opening -= 1
        if closes != self._closes:
            # aclose() ran while we connected: this connection is not the pool's.
            await anyio.aclose_forcefully(stream)
            raise ClosedDuringConnect
        conn = _Connection(stream, origin)
        self._connections.add(conn)
        return conn

    async def _connect(self, origin: Origin) -> ByteStream:
        tcp = await anyio.connect_tcp(origin.host, origin.port)
        if not origin.tls:
            return tcp
        context = self._ssl_context or ssl.create_default_context()
        try:
            # ALPN is read when the TLS object is created: set it right before.
            context.set_alpn_protocols(["http/1.1"])
            return await TLSStream.wrap(
                tcp, hostname=origin.host, ssl_context=context, standard_compatible=False
            )
        except BaseException:
            await anyio.aclose_forcefully(tcp)
            raise

    def _oldest_idle(self) -> _Connection | None:
        oldest: _Connection | None = None
        for idle in self._idle.values():
            if idle and (oldest is None or idle[0].expires < oldest.expires):
                oldest = idle[0]
        if oldest is not None:
            self._idle[oldest.origin].remove(oldest)
        return oldest

    async def _prune(self, now: float) -> None:
        """Closes idle connections past their keep-alive expiry (checked at most once a second)."""
        self._next_prune = now + min(1.0, self._expiry)
        expired = []
        for idle in self._idle.values():
            while idle and idle[0].expires <= now:
                expired.append(idle.pop(0))
        for conn in expired:
            await self.discard(conn)

    def _wake(self) -> None:
        if self._waiters:
            self._waiters.popleft().set()

    async def release(self, conn: _Connection) -> None:
        """An exchange ended: an intact connection goes back to the pool, others close."""
        if conn.finished and conn in self._connections:
            conn.expires = time.monotonic() + self._expiry
            self._idle.setdefault(conn.origin, []).append(conn)
            self._wake()
        else:
            await self.discard(conn)

    async def discard(self, conn: _Connection) -> None:
        """Closes a connection (an idle one, or one whose exchange was abandoned)."""
        if conn in self._connections:
            self._connections.discard(conn)
            self._wake()
        await conn.aclose()

    # -- exchanges ----------------------------------------------------------------------

    def _host(self, origin: Origin) -> bytes:
        host = self._hosts.get(origin)
        if host is None:
            host = self._hosts[origin] = origin.authority().encode("ascii", "replace")
        return host

    async def unary(
        self, origin: Origin, request: ClientRequest
    ) -> tuple[int, RawHeaders, bytes, RawHeaders | None]:
        body = request.body or b""
        method = request.method
        framing = b"content-length: %d\r\n\r\n" % len(body) if method != "GET" else b"\r\n"
        with map_errors():
            head = request_head(method, request.path, self._host(origin), request.headers, framing)
            conn = await self._acquire(origin)
        try:
            with map_errors():
                await conn.send(head + body if len(body) < 65536 else head)
                if len(body) >= 65536:
                    await conn.send(body)
                status, headers = await conn.read_head(method)
                data = await conn.read_all()
        except BaseException:
            await self.discard(conn)
            raise
        await self.release(conn)
        return status, headers, data, None

    async def open(
        self,
        origin: Origin,
        request: ClientRequest,
        body: AsyncIterable[bytes] | None,
        pump: TaskGroup | None,
    ) -> HTTP1Response:
        # HTTP/1.1 sends the whole request before the response is read: always half-duplex.
        method = request.method
        if body is not None:
            framing = b"transfer-encoding: chunked\r\n\r\n"
        elif request.body is not None:
            framing = b"content-length: %d\r\n\r\n" % len(request.body)
        else:
            framing = b"\r\n"
        with map_errors():
            head = request_head(method, request.path, self._host(origin), request.headers, framing)
            conn = await self._acquire(origin)
        try:
            with map_errors():
                if body is not None:
                    await conn.send_chunked(head, body)
                else:
                    await conn.send(head + (request.body or b""))
                status, headers = await conn.read_head(method)
        except BaseException:
            await self.discard(conn)
            raise
        return HTTP1Response(self, conn, status, headers)

    async def aclose(self) -> None:
        """Closes every connection, idle or in use (a call in flight fails as unavailable)."""
        self._closes += 1
        connections = list(self._connections)
        self._connections.clear()
        self._idle.clear()
        for conn in connections:
            await conn.aclose()
        while self._waiters:
            self._wake()
