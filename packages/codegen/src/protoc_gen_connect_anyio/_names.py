"""Python names for proto things: methods, modules, import aliases, and isort's ordering."""

from __future__ import annotations

__all__ = [
    "import_sort_key",
    "is_plain_module",
    "member_sort_key",
    "module_aliases",
    "pb2_module",
    "proto_stem",
    "python_module_path",
    "snake_case",
]

import keyword
import re
from collections.abc import Iterable

_SNAKE_BOUNDARY = re.compile(
    r"""
    (?<=[a-z0-9])(?=[A-Z])      # fooBar, foo2Bar -> foo_bar, foo2_bar
    | (?<=[A-Z])(?=[A-Z][a-z])  # HTTPResponse -> HTTP_Response
    """,
    re.VERBOSE,
)


def snake_case(name: str) -> str:
    """``MakeHat`` -> ``make_hat``, ``GetHTTPResponse`` -> ``get_http_response``.

    Digits stick to what precedes them (``Foo2Bar`` -> ``foo2_bar``,
    ``GetV2Data`` -> ``get_v2_data``); existing underscores are kept.
    """
    return _SNAKE_BOUNDARY.sub("_", name).lower()


def proto_stem(proto_path: str) -> str:
    """The path without its ``.proto`` (or ``.protodevel``) extension, as protoc strips it."""
    for ext in (".protodevel", ".proto"):
        if proto_path.endswith(ext):
            return proto_path[: -len(ext)]
    return proto_path


def python_module_path(proto_path: str, suffix: str) -> str:
    """The dotted module protoc's Python generator derives from a proto file, plus ``suffix``.

    ``a/b-c/d.proto`` -> ``a.b_c.d<suffix>``: dashes become underscores and slashes
    dots (and a dot in a file or directory name separates modules too).
    """
    return proto_stem(proto_path).replace("-", "_").replace("/", ".") + suffix


def pb2_module(proto_path: str) -> str:
    """The module protoc's ``--python_out`` writes for a proto file: ``a.b_c.d_pb2``."""
    return python_module_path(proto_path, "_pb2")


def is_plain_module(module: str) -> bool:
    """Whether an ``import`` statement can name the module (no keyword in its path)."""
    return all(part.isidentifier() and not keyword.iskeyword(part) for part in module.split("."))


def _protoc_alias(module: str) -> str:
    """protoc's own, injective alias: ``a.b_c.d_pb2`` -> ``a_dot_b__c_dot_d__pb2``."""
    return module.replace("_", "__").replace(".", "_dot_")


def module_aliases(modules: Iterable[str], taken: set[str]) -> dict[str, str]:
    """Short, deterministic aliases for ``_pb2`` modules, unique and not in ``taken``.

    A module is known by its last component (``hats_pb2``); when two modules share
    that, by as many trailing components as tell it apart (``v1_hats_pb2``); when
    even that is ambiguous, by protoc's alias. A clash with ``taken`` (names the
    generated file defines or imports) adds underscores.
    """
    ordered = sorted(set(modules))
    parts = {m: m.split(".") for m in ordered}
    aliases: dict[str, str] = {}
    for module in ordered:
        own = parts[module]
        for k in range(1, len(own) + 1):
            candidate = "_".join(own[-k:])
            if all("_".join(parts[o][-k:]) != candidate for o in ordered if o != module):
                aliases[module] = candidate
                break
        else:
            aliases[module] = _protoc_alias(module)
    counts: dict[str, int] = {}
    for alias in aliases.values():
        counts[alias] = counts.get(alias, 0) + 1
    used = set(taken)
    for module in ordered:
        alias = aliases[module]
        if counts[alias] > 1 or not alias.isidentifier() or keyword.iskeyword(alias):
            alias = _protoc_alias(module)
        if not alias.isidentifier():
            alias = "_" + alias
        while alias in used or keyword.iskeyword(alias):
            alias += "_"
        used.add(alias)
        aliases[module] = alias
    return aliases


_DIGITS = re.compile(r"[0-9]+|[^0-9]")


def _natural(text: str) -> tuple[tuple[int, int], ...]:
    """A natural, case-insensitive sort key (``v2`` < ``V3`` < ``v10``), as ruff's isort sorts.

    Characters compare by code, lower-cased; a run of digits compares with another by
    its value and with a character as its first digit would (all digits sit together
    in the code table, so ``ord("0")`` stands for any of them).
    """
    return tuple(
        (ord("0"), int(token)) if token[0] in "0123456789" else (ord(token.lower()[0]), 0)
        for token in _DIGITS.findall(text)
    )


def import_sort_key(module: str) -> tuple[tuple[int, int], ...]:
    """The order of ``from <module> import`` statements within one isort section."""
    return _natural(module)


def member_sort_key(name: str) -> tuple[int, tuple[tuple[int, int], ...]]:
    """The order of names in ``from m import a, B, C_D`` (isort's ``order-by-type``)."""
    if len(name) > 1 and name.isupper():
        kind = 0
    elif name[:1].isupper():
        kind = 1
    else:
        kind = 2
    return kind, _natural(name)
