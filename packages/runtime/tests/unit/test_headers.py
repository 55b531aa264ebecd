"""``Headers``: a case-insensitive multimap, and its helpers for binary (``-bin``) metadata."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connect_anyio import Headers
from connect_anyio._protocol import (
    decode_binary_header,
    encode_binary_header,
    is_reserved_header,
    user_headers,
)

SETTINGS = settings(deadline=None, database=None, derandomize=True, max_examples=200)


def test_names_are_case_insensitive_and_stored_lower_case() -> None:
    h = Headers()
    h["X-Custom"] = "a"
    assert h["x-custom"] == "a"
    assert h["X-CUSTOM"] == "a"
    assert "x-CUSTOM" in h
    assert list(h) == ["x-custom"]
    del h["X-Custom"]
    assert "x-custom" not in h
    assert 1 not in h


def test_add_keeps_every_value_in_order() -> None:
    h = Headers()
    h.add("Set-Thing", "1")
    h.add("set-thing", "2")
    h.add("other", "x")
    h.add("SET-THING", "3")
    assert h["set-thing"] == "1"  # the mapping view shows the first value
    assert h.getall("Set-Thing") == ["1", "2", "3"]
    assert list(h.allitems()) == [
        ("set-thing", "1"),
        ("set-thing", "2"),
        ("set-thing", "3"),
        ("other", "x"),
    ]
    assert len(h) == 2
    assert dict(h.items()) == {"set-thing": "1", "other": "x"}


def test_setitem_replaces_all_values() -> None:
    h = Headers([("a", "1"), ("A", "2")])
    h["a"] = "3"
    assert h.getall("a") == ["3"]


def test_get_and_missing_keys() -> None:
    h = Headers({"a": "1"})
    assert h.get("A") == "1"
    assert h.get("b") is None
    assert h.get("b", "dflt") == "dflt"
    assert h.getall("b") == []
    with pytest.raises(KeyError):
        h["b"]
    with pytest.raises(KeyError):
        del h["b"]


def test_constructors() -> None:
    assert list(Headers({"A": "1", "b": "2"}).allitems()) == [("a", "1"), ("b", "2")]
    pairs = Headers([("a", "1"), ("A", "2"), ("b", "3")])
    assert pairs.getall("a") == ["1", "2"]
    # From another Headers: duplicates survive (not just the mapping view).
    assert Headers(pairs).getall("a") == ["1", "2"]
    assert len(Headers()) == 0


def test_copy_is_independent() -> None:
    h = Headers([("a", "1")])
    c = h.copy()
    c.add("a", "2")
    c["b"] = "3"
    assert h.getall("a") == ["1"]
    assert "b" not in h
    assert c.getall("a") == ["1", "2"]


def test_equality_and_hashing() -> None:
    assert Headers([("A", "1"), ("a", "2")]) == Headers([("a", "1"), ("a", "2")])
    assert Headers([("a", "1"), ("a", "2")]) != Headers([("a", "2"), ("a", "1")])
    assert Headers({"a": "1"}) == {"a": "1"}
    with pytest.raises(TypeError):
        hash(Headers())


def test_clear() -> None:
    h = Headers([("a", "1"), ("b", "2")])
    h.clear()
    assert len(h) == 0
    assert list(h.allitems()) == []


def test_wire_round_trip_keeps_duplicates_and_latin1() -> None:
    raw = [(b"X-A", b"1"), (b"x-a", b"2"), (b"x-b", "caf\u00e9".encode("latin-1"))]
    h = Headers._from_wire(raw)
    assert h.getall("x-a") == ["1", "2"]
    assert h["x-b"] == "caf\u00e9"
    assert h._to_wire() == [(b"x-a", b"1"), (b"x-a", b"2"), (b"x-b", b"caf\xe9")]


def test_repr_shows_every_pair() -> None:
    assert repr(Headers([("a", "1"), ("a", "2")])) == "Headers([('a', '1'), ('a', '2')])"


# -- binary metadata -----------------------------------------------------------


def test_add_binary_sends_unpadded_standard_base64() -> None:
    h = Headers()
    h.add_binary("X-Data-Bin", b"\xfb\xff")
    assert h["x-data-bin"] == "+/8"
    assert h.getall_binary("x-data-bin") == [b"\xfb\xff"]


def test_add_binary_refuses_a_key_without_the_bin_suffix() -> None:
    with pytest.raises(ValueError, match="-bin"):
        Headers().add_binary("x-data", b"1")


@pytest.mark.parametrize(
    "wire",
    [
        "AAEC",  # no padding needed
        "AAECAw",  # unpadded
        "AAECAw==",  # padded
        "-_8",  # URL-safe alphabet
    ],
)
def test_getall_binary_accepts_padded_unpadded_and_url_safe(wire: str) -> None:
    h = Headers([("k-bin", wire)])
    (value,) = h.getall_binary("k-bin")
    assert encode_binary_header(value) == base64.b64encode(value).decode().rstrip("=")
    assert value == decode_binary_header(wire)


def test_getall_binary_splits_comma_joined_values() -> None:
    h = Headers([("k-bin", "AQ, Ag=="), ("k-bin", "Aw")])
    assert h.getall_binary("k-bin") == [b"\x01", b"\x02", b"\x03"]


@SETTINGS
@given(values=st.lists(st.binary(max_size=64), max_size=5))
def test_binary_round_trip(values: list[bytes]) -> None:
    h = Headers()
    for v in values:
        h.add_binary("trace-bin", v)
    assert h.getall_binary("TRACE-BIN") == values
    for v in values:
        assert decode_binary_header(encode_binary_header(v)) == v
        assert "=" not in encode_binary_header(v)


def test_decode_binary_header_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        decode_binary_header("a")


# -- which headers are the protocols' own --------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "content-type",
        "content-length",
        "content-encoding",
        "accept-encoding",
        "te",
        "connect-timeout-ms",
        "connect-protocol-version",
        "grpc-status",
        "grpc-timeout",
        ":path",
        "transfer-encoding",
        "host",
    ],
)
def test_reserved_headers_are_not_user_metadata(name: str) -> None:
    assert is_reserved_header(name)
    assert user_headers(Headers([(name, "v"), ("x-user", "u")])) == [(b"x-user", b"u")]


def test_user_headers_keep_duplicates() -> None:
    h = Headers([("x-a", "1"), ("x-a", "2"), ("x-b-bin", "AQ")])
    assert user_headers(h) == [(b"x-a", b"1"), (b"x-a", b"2"), (b"x-b-bin", b"AQ")]
