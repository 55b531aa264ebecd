"""Naming rules, import aliases, parameters and docstrings, one function at a time."""

from __future__ import annotations

import ast

import pytest

from protoc_gen_connect_anyio._docstrings import docstring
from protoc_gen_connect_anyio._generator import (
    GenerationError,
    MethodNames,
    Options,
    parse_parameter,
)
from protoc_gen_connect_anyio._names import (
    import_sort_key,
    is_plain_module,
    member_sort_key,
    module_aliases,
    pb2_module,
    python_module_path,
    snake_case,
)


@pytest.mark.parametrize(
    ("name", "snake"),
    [
        ("MakeHat", "make_hat"),
        ("GetHTTPResponse", "get_http_response"),
        ("HTTPGet", "http_get"),
        ("Foo2Bar", "foo2_bar"),
        ("GetV2Data", "get_v2_data"),
        ("Sha256Sum", "sha256_sum"),
        ("already_snake", "already_snake"),
        ("Mixed_Case", "mixed_case"),
        ("lowerCamel", "lower_camel"),
        ("ABC", "abc"),
        ("Import", "import"),
    ],
)
def test_snake_case(name: str, snake: str) -> None:
    assert snake_case(name) == snake


@pytest.mark.parametrize(
    ("path", "module"),
    [
        ("acme/hats/v1/hats.proto", "acme.hats.v1.hats_pb2"),
        ("a/b-c/d-e.proto", "a.b_c.d_e_pb2"),
        ("top.proto", "top_pb2"),
        ("a/b.c/d.proto", "a.b.c.d_pb2"),
        ("legacy.protodevel", "legacy_pb2"),
    ],
)
def test_pb2_module(path: str, module: str) -> None:
    assert pb2_module(path) == module


def test_connect_module_path() -> None:
    assert python_module_path("a/my-dir/x-y.proto", "_connect") == "a.my_dir.x_y_connect"


def test_plain_modules() -> None:
    assert is_plain_module("acme.hats.v1.hats_pb2")
    assert not is_plain_module("acme.class.v1.hats_pb2")
    assert not is_plain_module("acme.1st.hats_pb2")


def test_module_aliases_are_short_and_unique() -> None:
    modules = [
        "acme.hats.v1.hats_pb2",
        "acme.common.v1.common_pb2",
        "google.protobuf.empty_pb2",
        "acme.empty.v1.empty_pb2",
        "a_b.c_pb2",
        "a.b_c_pb2",
        "b_c_pb2",
    ]
    aliases = module_aliases(modules, taken={"hats_pb2"})
    assert aliases["acme.common.v1.common_pb2"] == "common_pb2"
    assert aliases["acme.hats.v1.hats_pb2"] == "hats_pb2_"
    assert aliases["google.protobuf.empty_pb2"] == "protobuf_empty_pb2"
    assert aliases["acme.empty.v1.empty_pb2"] == "v1_empty_pb2"
    assert len(set(aliases.values())) == len(modules)
    assert all(a.isidentifier() for a in aliases.values())
    assert module_aliases(reversed(modules), taken={"hats_pb2"}) == aliases


def test_isort_order() -> None:
    modules = ["acme.v10", "acme.V3", "acme.v2", "acme.a", "acme_x", "acme.b_c"]
    assert sorted(modules, key=import_sort_key) == [
        "acme.a",
        "acme.b_c",
        "acme.v2",
        "acme.V3",
        "acme.v10",
        "acme_x",
    ]
    names = ["lower", "Class", "CONSTANT", "Another"]
    assert sorted(names, key=member_sort_key) == ["CONSTANT", "Another", "Class", "lower"]


def test_parse_parameter() -> None:
    assert parse_parameter("") == Options()
    assert parse_parameter("method_names=proto").method_names is MethodNames.PROTO
    assert parse_parameter(" , method_names = snake , ").method_names is MethodNames.SNAKE
    with pytest.raises(GenerationError, match="unknown option 'x'"):
        parse_parameter("x=y")


def _parse(lines: list[str]) -> str | None:
    source = "def f():\n" + "\n".join(lines) + "\n"
    node = ast.parse(source).body[0]
    assert isinstance(node, ast.FunctionDef)
    return ast.get_docstring(node)


@pytest.mark.parametrize(
    ("comment", "text"),
    [
        (" One line.", "One line."),
        (" Title.\n\n Body\n   indented\n", "Title.\n\nBody\n  indented"),
        (' Say "hi"', 'Say "hi"'),
        ('"quoted"', '"quoted"'),
        (' a """ b', 'a """ b'),
        (" back\\slash\\", "back\\slash\\"),
    ],
)
def test_docstring_round_trip(comment: str, text: str) -> None:
    assert _parse(docstring([comment], 4)) == text


def test_docstring_keeps_inner_tabs() -> None:
    (line,) = docstring([" tab\there"], 4)
    assert line == '    """tab\there"""'


def test_docstring_layout() -> None:
    assert docstring([" One line."], 4) == ['    """One line."""']
    assert docstring([" First.", " Second."], 8) == [
        '        """First.',
        "",
        "        Second.",
        '        """',
    ]
    assert docstring(["", "  \n \n"], 4) == []
