"""HPACK for the HTTP/2 client: a stateless encoder, and ``hpack``'s decoder behind a cache.

Encoding never adds to the peer's dynamic table (every field is a literal
"without indexing", or a static-table index), so a field's encoding depends on
nothing but the field: it is computed once and looked up afterwards. A request
header block is the concatenation of its fields' encodings.

Decoding must follow the server's dynamic table, so ``hpack.Decoder`` does it.
Servers answer every call with the same few blocks (all references to the
dynamic table once it is warm); a block that changes nothing in the table
decodes to the same headers as long as the table is unchanged, so such results
are cached per block until the table changes.
"""

from __future__ import annotations

from typing import Any

import hpack

RawHeaders = list[tuple[bytes, bytes]]

# RFC 7541, Appendix A.
STATIC_TABLE: tuple[tuple[bytes, bytes], ...] = (
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
)

_FULL: dict[tuple[bytes, bytes], int] = {}
_NAME: dict[bytes, int] = {}
for _index, (_name, _value) in enumerate(STATIC_TABLE, start=1):
    _NAME.setdefault(_name, _index)
    if _value:
        _FULL[(_name, _value)] = _index

_SENSITIVE = frozenset({b"authorization", b"proxy-authorization", b"cookie", b"set-cookie"})
"""Sent as "never indexed", so that no intermediary puts them in a table."""

TABLE_SIZE_ZERO = b"\x20"
"""A dynamic table size update to 0: starts a block after the peer changed its table size."""


def encode_integer(value: int, prefix_bits: int, first: int) -> bytes:
    """RFC 7541 5.1: ``value`` with an N-bit prefix; ``first`` holds the bits above it."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(data: bytes) -> bytes:
    """A string literal, not Huffman-coded."""
    return encode_integer(len(data), 7, 0) + data


def encode_field(name: bytes, value: bytes) -> bytes:
    """One header field, independent of any dynamic table."""
    index = _FULL.get((name, value))
    if index is not None:
        return encode_integer(index, 7, 0x80)
    first = 0x10 if name in _SENSITIVE else 0x00
    name_index = _NAME.get(name)
    if name_index is not None:
        return encode_integer(name_index, 4, first) + _string(value)
    return bytes([first]) + _string(name) + _string(value)


_MAX_CACHED = 4096


class Encoder:
    """Header blocks from header lists; fields already seen cost one dict lookup."""

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: dict[tuple[bytes, bytes], bytes] = {}

    def encode(self, headers: RawHeaders) -> bytes:
        cache = self._cache
        parts = []
        for field in headers:
            encoded = cache.get(field)
            if encoded is None:
                encoded = encode_field(field[0], field[1])
                if len(cache) >= _MAX_CACHED:
                    cache.clear()
                cache[field] = encoded
            parts.append(encoded)
        return b"".join(parts)


class Decoder:
    """``hpack.Decoder`` with a cache of blocks that leave the dynamic table unchanged."""

    __slots__ = ("_cache", "_decoder", "_table")

    def __init__(self, max_header_list_size: int) -> None:
        self._decoder = hpack.Decoder()
        self._decoder.max_header_list_size = max_header_list_size
        self._cache: dict[bytes, RawHeaders] = {}
        self._table: Any = getattr(self._decoder, "header_table", None)

    def _state(self) -> object:
        """Identifies the dynamic table's contents: a new entry goes in front as a new
        object, evictions shrink it, a size update changes its maximum."""
        table = self._table
        try:
            entries = table.dynamic_entries
            return (id(entries[0]) if entries else None, len(entries), table.maxsize)
        except (AttributeError, TypeError):
            return None

    def decode(self, block: bytes) -> RawHeaders:
        """Raises ``hpack.HPACKError`` (or ``ValueError``) on a bad block."""
        cached = self._cache.get(block)
        before = self._state()
        if cached is not None and before is not None:
            return cached
        headers: RawHeaders = [(n, v) for n, v in self._decoder.decode(block, raw=True)]
        if before is not None and self._state() == before:
            if len(self._cache) >= 256:
                self._cache.clear()
            self._cache[block] = headers
        elif self._cache:
            self._cache.clear()  # the table changed: cached blocks may mean something else
        return headers
