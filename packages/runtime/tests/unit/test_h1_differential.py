"""The native server's HTTP/1.1 request parser (``_serve/_h1.py``) against h11.

h11 is the reference sans-IO reading of RFC 9112. Every generated request (valid
ones, and invalid ones built by one named mutation of a valid one) goes, split at
arbitrary byte boundaries, through both parsers: they must agree on whether the
request is accepted and, if it is, on its method, target, version, headers (in
order), body, keep-alive and where the next request starts (the bytes left over,
which is what request smuggling plays on).

Where our parser deliberately differs from h11 the test says so by name
(``STRICTER`` and ``LENIENT`` below, each with the reason) and checks the
difference is real: h11 accepts what we refuse, or the other way round.

The parser is driven through its own reading methods on a connection whose byte
stream is a list of pieces handed out at once: no socket, no event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import h11
import pytest
from _support.http1_gen import (
    SETTINGS,
    VCHARS,
    Feed,
    bytes_of,
    case_variant,
    field_values,
    ows,
    run_at_once,
    split,
    tokens,
)
from hypothesis import given
from hypothesis import strategies as st

from connect_anyio._serve import ServerLimits
from connect_anyio._serve._h1 import H1Connection, _BadBody, _BadRequest, _ConnectionGone

LIMITS = ServerLimits()


# -- driving the two parsers ---------------------------------------------------------------


@dataclass(frozen=True)
class Parsed:
    method: bytes
    target: bytes
    version: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    keep_alive: bool
    rest: bytes
    """What is left on the connection after this request: the next request's bytes."""
    expect_continue: bool
    """The client waits for ``100 Continue`` before it sends the body."""


@dataclass(frozen=True)
class Refused:
    status: int | None
    """Our status code (None: refused while reading the body, the connection drops)."""


INCOMPLETE = "incomplete"
Outcome = Parsed | Refused | str


def _h11_view(headers: Sequence[tuple[bytes, bytes]]) -> tuple[tuple[bytes, bytes], ...]:
    """Our headers as h11 reports them: it keeps one of several equal Content-Length
    fields and lower-cases the Transfer-Encoding value."""
    out = []
    seen_length = False
    for name, value in headers:
        if name == b"content-length":
            if seen_length:
                continue
            seen_length = True
        elif name == b"transfer-encoding":
            value = value.lower()
        out.append((name, value))
    return tuple(out)


def ours(pieces: Sequence[bytes], limits: ServerLimits = LIMITS) -> Outcome:
    feed = Feed(pieces)
    conn = H1Connection(feed, None, limits, scheme="http", client=None, server=None)  # type: ignore[arg-type]
    try:
        head = run_at_once(conn._read_head())
    except _BadRequest as e:
        return Refused(e.status)
    except _ConnectionGone:
        return INCOMPLETE
    if head is None:
        return INCOMPLETE
    body = bytearray()
    try:
        while piece := run_at_once(conn._read_body()):
            body += piece
    except _BadBody:
        return Refused(None)
    except _ConnectionGone:
        return INCOMPLETE
    return Parsed(
        head.method.encode(),
        head.target,
        head.version.encode(),
        _h11_view(head.headers),
        bytes(body),
        head.keep_alive,
        conn._buf + b"".join(feed.pieces),
        head.expect_continue,
    )


def reference(pieces: Sequence[bytes], limits: ServerLimits = LIMITS) -> Outcome:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
    for piece in pieces:
        if piece:
            conn.receive_data(piece)
    conn.receive_data(b"")
    try:
        request = conn.next_event()
        if not isinstance(request, h11.Request):
            return INCOMPLETE
        # (h11 reports the expectation even for a request without a body, which we ignore.)
        no_body = all(
            name != b"transfer-encoding" and (name != b"content-length" or value == b"0")
            for name, value in request.headers
        )
        expect_continue = conn.they_are_waiting_for_100_continue and not no_body
        body = bytearray()
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                return INCOMPLETE
    except h11.RemoteProtocolError:
        return Refused(None)
    return Parsed(
        request.method,
        request.target,
        request.http_version,
        tuple((name, value) for name, value in request.headers),
        bytes(body),
        conn.their_state is h11.DONE,
        bytes(conn.trailing_data[0]),
        expect_continue,
    )


# -- generating requests -----------------------------------------------------------------

FRAMING_NAMES = {b"host", b"content-length", b"transfer-encoding"}


common_fields = st.sampled_from(
    [
        (b"Content-Type", b"application/grpc-web+proto"),
        (b"Accept", b"*/*"),
        (b"Connection", b"close"),
        (b"Connection", b"keep-alive"),
        (b"Connection", b"Upgrade, Close"),
        (b"Expect", b"100-continue"),
        (b"Expect", b"100-Continue"),
        (b"Expect", b"x-other, 100-continue"),
        (b"Expect", b"x-other"),
        (b"Connect-Protocol-Version", b"1"),
        (b"User-Agent", b"test/1.0 (x; y)"),
    ]
)
generic_fields = st.tuples(
    tokens.filter(lambda name: name.lower() not in FRAMING_NAMES), field_values()
)
fields = st.lists(st.one_of(common_fields, generic_fields), max_size=6)


@dataclass
class Request:
    """A request in parts, so that a mutation can change one of them."""

    method: bytes
    target: bytes
    version: bytes
    fields: list[tuple[bytes, bytes, bytes, bytes]]
    """name, whitespace, value, whitespace"""
    body: bytes
    """The body as sent (chunked framing included)."""
    content: bytes
    """The body as read."""
    after: bytes = b""
    """Bytes after the request (a pipelined request, garbage)."""

    def add(self, name: bytes, value: bytes) -> Request:
        self.fields.append((name, b" ", value, b""))
        return self

    def encode(self) -> bytes:
        head = b"%s %s HTTP/%s\r\n" % (self.method, self.target, self.version)
        head += b"".join(n + b":" + a + v + z + b"\r\n" for n, a, v, z in self.fields)
        return head + b"\r\n" + self.body + self.after


def _chunk_size(draw: st.DrawFn, size: int) -> bytes:
    text = b"%x" % size
    text = draw(st.sampled_from([text, text.upper()]))
    return b"0" * draw(st.integers(0, 15 - len(text))) + text


chunk_exts = st.sampled_from(
    [b"", b"", b";a", b";a=b", b';name="v, v"', b";x=1;y=2", b";e=\x80", b";a\t"]
)
trailer_fields = st.lists(generic_fields, max_size=2)


@st.composite
def requests(draw: st.DrawFn) -> Request:
    method = draw(
        st.one_of(st.sampled_from([b"GET", b"POST", b"PUT", b"HEAD", b"OPTIONS"]), tokens)
    )
    target = draw(
        st.one_of(
            st.sampled_from([b"/", b"*", b"/pkg.Service/Method?x=1", b"http://h:1/p", b"h:443"]),
            bytes_of(VCHARS, max_size=16),
        )
    )
    version = draw(st.sampled_from([b"1.1", b"1.1", b"1.0"]))
    pairs = list(draw(fields))
    if version == b"1.1" or draw(st.booleans()):
        host = (draw(case_variant(b"Host")), draw(st.sampled_from([b"example.com", b"h:80", b""])))
        pairs.insert(draw(st.integers(0, len(pairs))), host)
    framings = ["none", "length", "chunked"] if version == b"1.1" else ["none", "length"]
    framing = draw(st.sampled_from(framings))
    content = draw(st.binary(max_size=40)) if framing != "none" else b""
    body = content
    if framing == "length":
        field = (draw(case_variant(b"Content-Length")), b"%d" % len(content))
        for _ in range(draw(st.integers(1, 2))):  # several equal lengths are allowed
            pairs.insert(draw(st.integers(0, len(pairs))), field)
    elif framing == "chunked":
        te = (draw(case_variant(b"Transfer-Encoding")), draw(case_variant(b"chunked")))
        pairs.insert(draw(st.integers(0, len(pairs))), te)
        cuts = draw(st.lists(st.integers(1, max(1, len(content) - 1)), max_size=3))
        body = b""
        for piece in split(content, cuts):
            if piece:
                body += _chunk_size(draw, len(piece)) + draw(chunk_exts) + b"\r\n" + piece + b"\r\n"
        body += _chunk_size(draw, 0) + draw(chunk_exts) + b"\r\n"
        body += b"".join(name + b": " + value + b"\r\n" for name, value in draw(trailer_fields))
        body += b"\r\n"
    after = draw(st.sampled_from([b"", b"GET /next HTTP/1.1\r\nHost: n\r\n\r\n", b"\x00garbage"]))
    spaced = [(name, draw(ows), value, draw(ows)) for name, value in pairs]
    return Request(method, target, version, spaced, body, content, after)


# -- valid requests --------------------------------------------------------------------------


@SETTINGS
@given(requests(), st.lists(st.integers(0, 1 << 16), max_size=6))
def test_valid_requests_agree_with_h11(request: Request, cuts: list[int]) -> None:
    data = request.encode()
    expected = reference(split(data, cuts))
    assert isinstance(expected, Parsed), (data, expected)
    assert expected.body == request.content
    assert expected.rest == request.after
    assert ours(split(data, cuts)) == expected, data
    # Where the stream is cut makes no difference.
    assert ours([data]) == expected


def test_nothing_sent() -> None:
    assert ours([]) == INCOMPLETE


@SETTINGS
@given(requests(), st.integers(0, 1 << 16))
def test_truncated_requests_are_never_accepted(request: Request, cut: int) -> None:
    request.after = b""
    data = request.encode()
    data = data[: cut % len(data)]
    assert ours([data]) == INCOMPLETE
    assert not isinstance(reference([data]), Parsed)


def test_blank_lines_between_pipelined_requests_are_skipped() -> None:
    first = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
    second = b"\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"
    feed = Feed([first + second])
    conn = H1Connection(feed, None, LIMITS, scheme="http", client=None, server=None)  # type: ignore[arg-type]
    assert run_at_once(conn._read_head()) is not None
    head = run_at_once(conn._read_head())
    assert head is not None
    assert head.target == b"/b"


# -- invalid requests: one mutation of a valid request ------------------------------------------

Mutation = Callable[[Request], "Request | bytes"]
SIMPLE = b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-B: 2\r\n\r\n"
CHUNKED = [b"5;a=b\r\n", b"hello\r\n", b"0\r\n", b"T: v\r\n", b"\r\n"]


def _clean(request: Request, version: bytes = b"1.1") -> Request:
    """The request without body or framing fields (and with exactly one Host)."""
    request.version = version
    request.fields = [f for f in request.fields if f[0].lower() not in FRAMING_NAMES]
    request.fields.insert(0, (b"Host", b" ", b"h", b""))
    request.body = request.content = request.after = b""
    return request


def _raw(transform: Callable[[bytes], bytes]) -> Mutation:
    """A change to the bytes of a simple request."""
    return lambda _request: transform(SIMPLE)


def _chunked(transform: Callable[[list[bytes]], list[bytes]]) -> Mutation:
    """A change to the lines of a chunked body."""

    def mutate(request: Request) -> Request:
        request = _clean(request).add(b"Transfer-Encoding", b"chunked")
        request.body = b"".join(transform(list(CHUNKED)))
        return request

    return mutate


def _framed(
    te: bytes | None, length: bytes | None, body: bytes = b"", version: bytes = b"1.1"
) -> Mutation:
    """A request with the given framing fields (None: none) and body bytes."""

    def mutate(request: Request) -> Request:
        request = _clean(request, version)
        if te is not None:
            request.add(b"Transfer-Encoding", te)
        if length is not None:
            request.add(b"Content-Length", length)
        request.body = body
        return request

    return mutate


def _set(**parts: bytes) -> Mutation:
    def mutate(request: Request) -> Request:
        request = _clean(request)
        for name, value in parts.items():
            setattr(request, name, value)
        return request

    return mutate


def _hosts(version: bytes, count: int) -> Mutation:
    def mutate(request: Request) -> Request:
        request = _clean(request, version)
        request.fields = [f for f in request.fields if f[0].lower() != b"host"]
        for i in range(count):
            request.add(b"Host", b"h%d" % i)
        return request

    return mutate


BOTH_REFUSE: dict[str, Mutation] = {
    "method with a non-token byte": _set(method=b"GE(T"),
    "method with NUL": _set(method=b"G\x00T"),
    "target with DEL": _set(target=b"/a\x7fb"),
    "target with obs-text": _set(target=b"/\xe9"),
    "target with a control byte": _set(target=b"/a\x01"),
    "lower-case HTTP name": _raw(lambda b: b.replace(b"HTTP/1.1", b"http/1.1")),
    "version without minor": _raw(lambda b: b.replace(b"HTTP/1.1", b"HTTP/1")),
    "two-digit major version": _set(version=b"11.1"),
    "two spaces in the request line": _raw(lambda b: b.replace(b" HTTP/", b"  HTTP/")),
    "tab in the request line": _raw(lambda b: b.replace(b" HTTP/", b"\tHTTP/")),
    "space before the request line": _raw(lambda b: b" " + b),
    # (Empty lines before a request line are skipped, but only CRLF ones: see LENIENT.)
    "bare LF after an empty line": _raw(lambda b: b"\r\n\n" + b),
    "bare CR after an empty line": _raw(lambda b: b"\r\n\r" + b),
    "CR CR LF after an empty line": _raw(lambda b: b"\r\n\r\r\n" + b),
    "bare LF before the request line": _raw(lambda b: b"\n" + b),
    "space before a colon": _raw(lambda b: b.replace(b"X-A:", b"X-A :")),
    "empty field name": _raw(lambda b: b.replace(b"X-A:", b":")),
    "field name with a non-token byte": _raw(lambda b: b.replace(b"X-A:", b"X@A:")),
    "field name with obs-text": _raw(lambda b: b.replace(b"X-A:", b"X\xe9:")),
    "field line without a colon": _raw(lambda b: b.replace(b"X-A: 1", b"X-A 1")),
    "bare CR in a value": _raw(lambda b: b.replace(b"X-A: 1", b"X-A: 1\r2")),
    "NUL in a value": _raw(lambda b: b.replace(b"X-A: 1", b"X-A: 1\x002")),
    "vertical tab in a value": _raw(lambda b: b.replace(b"X-A: 1", b"X-A: 1\x0b2")),
    "form feed in a value": _raw(lambda b: b.replace(b"X-A: 1", b"X-A: 1\x0c2")),
    "missing Host (HTTP/1.1)": _hosts(b"1.1", 0),
    "two Host fields (HTTP/1.1)": _hosts(b"1.1", 2),
    "two Host fields (HTTP/1.0)": _hosts(b"1.0", 2),
    "conflicting Content-Length fields": _framed(None, b"1\r\nContent-Length: 2", b"x"),
    "Content-Length not a number": _framed(None, b"abc"),
    "negative Content-Length": _framed(None, b"-1"),
    "Content-Length with a sign": _framed(None, b"+1", b"x"),
    "hexadecimal Content-Length": _framed(None, b"0x1", b"x"),
    "Content-Length with two numbers": _framed(None, b"1 2", b"x"),
    "empty Content-Length": _framed(None, b""),
    "conflicting lengths in one field": _framed(None, b"1, 2", b"x"),
    "Content-Length of 21 digits": _framed(None, b"0" * 20 + b"1", b"x"),
    "Transfer-Encoding gzip": _framed(b"gzip", None, b"0\r\n\r\n"),
    "Transfer-Encoding identity": _framed(b"identity", None),
    "Transfer-Encoding gzip, chunked": _framed(b"gzip, chunked", None, b"0\r\n\r\n"),
    "Transfer-Encoding chunked, gzip": _framed(b"chunked, gzip", None, b"0\r\n\r\n"),
    "Transfer-Encoding chunked twice in one field": _framed(
        b"chunked, chunked", None, b"0\r\n\r\n"
    ),
    "Transfer-Encoding chunked in two fields": _framed(
        b"chunked\r\nTransfer-Encoding: chunked", None, b"0\r\n\r\n"
    ),
    "Transfer-Encoding xchunked": _framed(b"xchunked", None, b"0\r\n\r\n"),
    "Transfer-Encoding empty": _framed(b"", None),
    "chunk size not hexadecimal": _chunked(lambda c: [b"g\r\n", *c[1:]]),
    "chunk size empty": _chunked(lambda c: [b"\r\n", *c[1:]]),
    "chunk size negative": _chunked(lambda c: [b"-5\r\n", *c[1:]]),
    "chunk size 0x-prefixed": _chunked(lambda c: [b"0x5\r\n", *c[1:]]),
    "space before the chunk size": _chunked(lambda c: [b" 5\r\n", *c[1:]]),
    "chunk size of 21 hex digits": _chunked(lambda c: [b"0" * 20 + b"5\r\n", *c[1:]]),
    "chunk data longer than its size": _chunked(lambda c: [c[0], b"hello!\r\n", *c[2:]]),
    "chunk data shorter than its size": _chunked(lambda c: [c[0], b"hell\r\n", *c[2:]]),
    "chunk data not followed by CRLF": _chunked(lambda c: [c[0], b"helloXY", *c[2:]]),
    "chunk data followed by a bare LF": _chunked(lambda c: [c[0], b"hello\n", *c[2:]]),
    "chunk data followed by a bare CR": _chunked(lambda c: [c[0], b"hello\r", *c[2:]]),
    "trailer with a space before its colon": _chunked(lambda c: [*c[:3], b"T : v\r\n", c[4]]),
    "trailer line without a colon": _chunked(lambda c: [*c[:3], b"T v\r\n", c[4]]),
    "trailer with NUL": _chunked(lambda c: [*c[:3], b"T: \x00\r\n", c[4]]),
    "trailer with a bare CR": _chunked(lambda c: [*c[:3], b"T: a\rb\r\n", c[4]]),
    "trailer starting with a continuation line": _chunked(lambda c: [*c[:3], b" T: v\r\n", c[4]]),
}

STRICTER: dict[str, Mutation] = {
    # RFC 9112 2.2 lets a recipient take a bare LF as a line end; we refuse it: a server
    # and a proxy that split lines differently see different requests.
    "bare LF ending a field line": _raw(lambda b: b.replace(b"X-A: 1\r\n", b"X-A: 1\n")),
    "bare LF ending the request line": _raw(lambda b: b.replace(b"HTTP/1.1\r\n", b"HTTP/1.1\n")),
    "bare LF ending the head": _raw(lambda b: b[:-2] + b"\n"),
    "bare LF ending the last chunk": _chunked(lambda c: [*c[:2], b"0\r\n", b"\n"]),
    # RFC 9112 5.2: a server either refuses obs-fold (400) or unfolds it; we refuse.
    "obs-fold": _raw(lambda b: b.replace(b"X-A: 1\r\n", b"X-A: 1\r\n  more\r\n")),
    "obs-fold hiding Transfer-Encoding": _raw(
        lambda b: b.replace(b"X-A: 1\r\n", b"X-A: 1\r\n Transfer-Encoding: chunked\r\n")
    ),
    # RFC 9110 5.5: field-vchar is VCHAR or obs-text; h11 also takes other control bytes.
    "control byte in a value": _raw(lambda b: b.replace(b"X-A: 1", b"X-A: 1\x012")),
    "DEL in a value": _raw(lambda b: b.replace(b"X-A: 1", b"X-A: \x7f")),
    "escape byte in a value": _raw(lambda b: b.replace(b"X-A: 1", b"X-A: \x1b[0m")),
    # Only HTTP/1.0 and HTTP/1.1 are served (505); h11 takes any HTTP/d.d.
    "HTTP/1.2": _set(version=b"1.2"),
    "HTTP/2.0 request line": _set(version=b"2.0"),
    "HTTP/0.9 request line": _set(version=b"0.9"),
    # RFC 9112 6.1: both framings at once is the classic smuggling vector, which a server
    # may refuse (h11 lets Transfer-Encoding win).
    "Content-Length and Transfer-Encoding (CL.TE)": _framed(
        b"chunked\r\nContent-Length: 5", None, b"0\r\n\r\n"
    ),
    "Transfer-Encoding and Content-Length (TE.CL)": _framed(b"chunked", b"5", b"0\r\n\r\n"),
    "Content-Length 0 and Transfer-Encoding": _framed(b"chunked", b"0", b"0\r\n\r\n"),
    # RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing.
    "Transfer-Encoding in HTTP/1.0": _framed(b"chunked", None, b"0\r\n\r\n", b"1.0"),
    # A list of equal lengths in one field (h11 collapses it); several fields with the
    # same length are accepted.
    "Content-Length list of equal values": _framed(None, b"1, 1", b"x"),
    # Lengths of more than 18 digits (h11 takes 20); no body is that long.
    "Content-Length of 19 digits": _framed(None, b"0" * 18 + b"1", b"x"),
    # Chunk sizes of more than 15 hex digits (h11 takes 20).
    "chunk size of 16 hex digits": _chunked(lambda c: [b"0" * 15 + b"5\r\n", *c[1:]]),
    # Chunk extensions hold VCHAR, obs-text and whitespace; h11 takes any byte but LF.
    "control byte in a chunk extension": _chunked(lambda c: [b"5;a=\x01\r\n", *c[1:]]),
    "bare CR in a chunk extension": _chunked(lambda c: [b"5;a=\rb\r\n", *c[1:]]),
    "NUL in a chunk extension": _chunked(lambda c: [b"5;a=\x00\r\n", *c[1:]]),
    # Trailer lines follow the rules of head lines: no bare LF, no obs-fold, no controls.
    "trailer line ending in bare LF": _chunked(lambda c: [*c[:3], b"T: v\nU: w\r\n", c[4]]),
    "obs-fold in a trailer": _chunked(lambda c: [*c[:3], b"T: v\r\n w\r\n", c[4]]),
    "control byte in a trailer": _chunked(lambda c: [*c[:3], b"T: \x01\r\n", c[4]]),
}

LENIENT: dict[str, tuple[Mutation, Callable[[bytes], bytes]]] = {
    # name: (mutation, the same request written in a form h11 takes)
    # RFC 9112 2.2: a server should ignore at least one empty line before a request line
    # (h11 refuses it).
    "empty line before the request line": (
        _raw(lambda b: b"\r\n" + b),
        lambda b: b.removeprefix(b"\r\n"),
    ),
    "empty lines before the request line": (
        _raw(lambda b: b"\r\n\r\n\r\n" + b),
        lambda b: b.removeprefix(b"\r\n\r\n\r\n"),
    ),
    # RFC 9112 7.1.1: chunk-ext = *( BWS ";" ...): whitespace may come before the ";"
    # (h11 only takes whitespace at the end of the line).
    "whitespace before a chunk extension": (
        _chunked(lambda c: [b"5 ;a=b\r\n", *c[1:]]),
        lambda b: b.replace(b"5 ;a=b", b"5;a=b"),
    ),
    # Trailer fields are checked as field lines, then dropped unread: h11 also applies its
    # Content-Length / Transfer-Encoding rules to them.
    "Transfer-Encoding gzip as a trailer": (
        _chunked(lambda c: [*c[:3], b"Transfer-Encoding: gzip\r\n", c[4]]),
        lambda b: b.replace(b"Transfer-Encoding: gzip\r\n\r\n", b"\r\n"),
    ),
    "malformed Content-Length as a trailer": (
        _chunked(lambda c: [*c[:3], b"Content-Length: x\r\n", c[4]]),
        lambda b: b.replace(b"Content-Length: x\r\n\r\n", b"\r\n"),
    ),
}


def _encode(result: Request | bytes) -> bytes:
    return result if isinstance(result, bytes) else result.encode()


@SETTINGS
@given(
    requests(), st.sampled_from(sorted(BOTH_REFUSE)), st.lists(st.integers(0, 1 << 16), max_size=4)
)
def test_invalid_requests_are_refused_by_both(request: Request, name: str, cuts: list[int]) -> None:
    data = _encode(BOTH_REFUSE[name](request))
    expected = reference([data])
    assert isinstance(expected, Refused), (name, data, expected)
    assert isinstance(ours(split(data, cuts)), Refused), (name, data)


@SETTINGS
@given(requests(), st.sampled_from(sorted(STRICTER)), st.lists(st.integers(0, 1 << 16), max_size=4))
def test_deliberately_stricter_than_h11(request: Request, name: str, cuts: list[int]) -> None:
    data = _encode(STRICTER[name](request))
    assert isinstance(reference([data]), Parsed), (name, data)  # the difference is real
    assert isinstance(ours(split(data, cuts)), Refused), (name, data)


@SETTINGS
@given(requests(), st.sampled_from(sorted(LENIENT)), st.lists(st.integers(0, 1 << 16), max_size=4))
def test_deliberately_more_lenient_than_h11(request: Request, name: str, cuts: list[int]) -> None:
    mutation, canonical = LENIENT[name]
    data = _encode(mutation(request))
    assert isinstance(reference([data]), Refused), (name, data)  # the difference is real
    expected = reference([canonical(data)])
    assert isinstance(expected, Parsed), (name, canonical(data))
    assert ours(split(data, cuts)) == expected, (name, data)


@SETTINGS
@given(requests(), st.integers(0, 1 << 16), st.integers(0, 255))
def test_one_inserted_byte_never_makes_the_parsers_disagree_silently(
    request: Request, where: int, byte: int
) -> None:
    """One byte inserted anywhere: if both accept, they read the same request; if only
    one does, the difference is one of the documented ones."""
    request.after = b""
    original = request.encode()
    where %= len(original) + 1
    data = original[:where] + bytes([byte]) + original[where:]
    got, expected = ours([data]), reference([data])
    if isinstance(got, Parsed) and isinstance(expected, Parsed):
        assert got == expected, data
    elif isinstance(got, Parsed):
        # Only whitespace before a chunk extension (no leading empty line from one byte).
        assert byte in b" \t", data
        assert reference([original]) == got, data
    elif isinstance(expected, Parsed):
        assert _explains_strictness(original, where, byte, expected), data


def _explains_strictness(original: bytes, where: int, byte: int, accepted: Parsed) -> bool:
    """Whether one byte inserted into a valid request makes one of the STRICTER cases."""
    head_end = original.index(b"\r\n\r\n") + 2
    if byte == 0x0A or (byte < 0x20 and byte != 0x09) or byte == 0x7F:
        return True  # a bare LF, or a control byte in a value, chunk extension or trailer
    if byte in b" \t" and original[where - 2 : where] == b"\r\n":
        return True  # obs-fold, in the head or the trailers
    if accepted.version not in (b"1.0", b"1.1"):
        return True
    names = [name for name, _ in accepted.headers]
    if b"transfer-encoding" in names and b"content-length" in names:
        return True
    if where > head_end and byte in b"0123456789abcdefABCDEF":
        return True  # a chunk size of 16 hex digits
    return any(name == b"content-length" and b"," in value for name, value in accepted.headers)


# -- request smuggling classics, one by one ----------------------------------------------------

POST = b"POST / HTTP/1.1\r\nHost: h\r\n"
SMUGGLING = [
    POST + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
    POST + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\nGPOST",
    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 0\r\n\r\nGPOST",
    POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \x00chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nX: y\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nX: y\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nX: y\rTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1e1\r\n\r\n",
    b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET / HTTP/1.1\nHost: h\n\n",
]


@pytest.mark.parametrize("data", SMUGGLING)
def test_smuggling_classics_are_refused(data: bytes) -> None:
    for pieces in ([data], [bytes([b]) for b in data]):
        assert isinstance(ours(pieces), Refused), data


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (b"Expect: 100-continue\r\n", True),
        (b"Expect: 100-Continue\r\n", True),
        (b"Expect: x-other, 100-continue\r\n", True),
        (b"Expect: 100-continue\r\nExpect: x-other\r\n", True),
        (b"Expect: x-other\r\nExpect: 100-continue\r\n", True),
        (b"Expect: x-100-continue\r\n", False),
        (b"Expect: x-other\r\n", False),
    ],
)
def test_expect_100_continue(fields: bytes, expected: bool) -> None:
    """``Expect`` holds a list (RFC 9110 10.1.1): 100-continue counts wherever it is in it."""
    data = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n" + fields + b"\r\nok"
    got = ours([data])
    assert isinstance(got, Parsed)
    assert got.expect_continue is expected
    assert got == reference([data])


def test_refusal_status_codes() -> None:
    host = b"Host: h\r\n"
    assert ours([b"GET / HTTP/1.1\r\n\r\n"]) == Refused(400)
    assert ours([b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"]) == Refused(400)
    assert isinstance(ours([b"GET / HTTP/1.0\r\n\r\n"]), Parsed)
    assert ours([b"GET / HTTP/2.0\r\n" + host + b"\r\n"]) == Refused(505)
    assert ours([b"POST / HTTP/1.1\r\n" + host + b"Transfer-Encoding: gzip\r\n\r\n"]) == Refused(
        501
    )
    assert ours([b"POST / HTTP/1.1\r\n" + host + b"Content-Length: x\r\n\r\n"]) == Refused(400)
    # A body whose chunked framing breaks ends the connection (no status).
    assert ours(
        [b"POST / HTTP/1.1\r\n" + host + b"Transfer-Encoding: chunked\r\n\r\nz\r\n"]
    ) == Refused(None)


# -- limits -----------------------------------------------------------------------------------

SMALL = ServerLimits(max_header_bytes=1024)


@pytest.mark.parametrize("size", range(1024 - 3, 1024 + 4))
def test_head_size_limit(size: int) -> None:
    """A head (its blank line included) of up to ``max_header_bytes`` is read, a longer
    one refused with 431, wherever the stream is cut."""
    start = b"GET / HTTP/1.1\r\nHost: h\r\nX: "
    data = start + b"a" * (size - len(start) - 4) + b"\r\n\r\n"
    for cut in [100, *range(size - 6, size + 1)]:
        got = ours([data[:cut], data[cut:]], SMALL)
        if size <= SMALL.max_header_bytes:
            assert isinstance(got, Parsed), cut
        else:
            assert got == Refused(431), cut
    # A head that never ends is refused once it passes the limit, whatever h11 makes of it.
    endless = data[:-4] + b"a" * size
    assert ours([endless[:500], endless[500:]], SMALL) == Refused(431)
    assert isinstance(reference([endless[:500], endless[500:]], SMALL), Refused)


@pytest.mark.parametrize("size", range(4096 - 3, 4096 + 4))
def test_chunk_line_limit(size: int) -> None:
    """A chunk-size line (extensions included) of up to 4 KiB is read, a longer one
    refused, wherever the stream is cut (it used to depend on whether the line's end
    came in the same read as its start)."""
    head = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    line = b"5;" + b"e" * (size - 2)
    data = head + line + b"\r\nhello\r\n0\r\n\r\n"
    line_end = len(head) + size
    for cut in [len(head) + 10, *range(line_end - 2, line_end + 4)]:
        got = ours([data[:cut], data[cut:]])
        if size <= 4096:
            assert isinstance(got, Parsed), cut
            assert got.body == b"hello"
        else:
            assert got == Refused(None), cut
    if size > 4096:
        assert ours([head + line]) == Refused(None)  # even before the line ends


def test_trailer_section_limit() -> None:
    head = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
    trailers = b"".join(b"T%d: %s\r\n" % (i, b"v" * 90) for i in range(10))
    assert isinstance(ours([head + trailers + b"\r\n"], SMALL), Parsed)
    assert ours([head + trailers * 2 + b"\r\n"], SMALL) == Refused(None)


def test_slow_pathological_value_is_linear() -> None:
    """Long runs of whitespace inside a value do not make the field regex backtrack badly
    (this would time out the test run rather than fail fast, but it is cheap insurance)."""
    value = b"a" + b" \t" * 30000 + b"\x01"
    data = b"GET / HTTP/1.1\r\nHost: h\r\nX: " + value + b"\r\n\r\n"
    assert ours([data], ServerLimits(max_header_bytes=1 << 20)) == Refused(400)
