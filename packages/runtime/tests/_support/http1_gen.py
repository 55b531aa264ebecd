"""What the two HTTP/1.1 differential tests share (our server's request parser and our
client's response codec, each against h11): a byte stream made of given pieces, a way to
run a parser that never waits, cutting bytes into pieces, and the generators of the
RFC 9110/9112 building blocks (tokens, optional whitespace, field values)."""

from __future__ import annotations

from collections import deque
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import anyio
from hypothesis import settings
from hypothesis import strategies as st

SETTINGS = settings(deadline=None, database=None, derandomize=True, max_examples=250)
"""Deterministic in CI, no example database, no deadline (the machine may be busy)."""

T = TypeVar("T")


class Feed:
    """A connection's byte stream: the given pieces, then the end of the stream; what is
    sent is kept in ``sent``."""

    def __init__(self, pieces: Sequence[bytes]) -> None:
        self.pieces = deque(piece for piece in pieces if piece)
        self.sent: list[bytes] = []

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self.pieces:
            raise anyio.EndOfStream
        return self.pieces.popleft()

    async def send(self, item: bytes) -> None:
        self.sent.append(item)

    async def aclose(self) -> None:
        pass

    def extra(self, attribute: Any, default: Any = None) -> Any:
        return default


def run_at_once(coro: Coroutine[Any, Any, T]) -> T:
    """Runs a coroutine that never has to wait (the feed answers at once)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise AssertionError("the parser waited for something other than its byte stream")


def split(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """``data`` cut at the given points (taken modulo its length + 1)."""
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    pieces = []
    start = 0
    for point in [*points, len(data)]:
        pieces.append(data[start:point])
        start = point
    return pieces


TCHARS = sorted(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
VCHARS = list(range(0x21, 0x7F))
FIELD_VCHARS = VCHARS + list(range(0x80, 0x100))  # obs-text is allowed in field values


def bytes_of(
    alphabet: Sequence[int], min_size: int = 1, max_size: int = 10
) -> st.SearchStrategy[bytes]:
    return st.lists(st.sampled_from(alphabet), min_size=min_size, max_size=max_size).map(bytes)


tokens = bytes_of(TCHARS)
ows = st.sampled_from([b"", b"", b" ", b"\t", b"  ", b" \t"])


@st.composite
def field_values(draw: st.DrawFn) -> bytes:
    words = draw(st.lists(bytes_of(FIELD_VCHARS, max_size=6), max_size=4))
    value = b""
    for i, word in enumerate(words):
        if i:
            value += draw(st.sampled_from([b" ", b"\t", b"  ", b" \t "]))
        value += word
    return value


@st.composite
def case_variant(draw: st.DrawFn, name: bytes) -> bytes:
    return draw(st.sampled_from([name, name.lower(), name.upper(), name.title()]))
