"""A small Wadler-style pretty printer that lays out statements the way ``ruff format`` does.

Generated code has to come out exactly as ``ruff format`` would print it, whatever the
length of the names in a proto file, without running ruff at generation time. Most of
the generated code is made stable by magic trailing commas (an exploded call or
signature stays exploded). What remains are the few places where ruff decides between
one line and several by measuring: subscripted annotations, a union annotation, class
bases, a return annotation or returned value that ruff may wrap in parentheses, and
long import lists. Those are built from the documents below and printed with the same
algorithm ruff's printer uses (Prettier's): a group is printed flat when it fits in
what is left of the line, up to the next possible line break, and broken otherwise.
"""

from __future__ import annotations

__all__ = [
    "LINE",
    "LINE_LENGTH",
    "SOFTLINE",
    "Doc",
    "Group",
    "IfBreak",
    "Indent",
    "Line",
    "MaybeParenthesize",
    "bracketed",
    "render",
]

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

LINE_LENGTH = 88
"""ruff's (and Black's) default ``line-length``."""

_INDENT = 4


@dataclass(frozen=True, slots=True)
class Line:
    """A place to break: a space (or nothing, when ``soft``) if its group is flat."""

    soft: bool = False


SOFTLINE = Line(soft=True)
LINE = Line()


@dataclass(frozen=True, slots=True)
class Group:
    """Printed flat if it fits in the rest of the line, otherwise with its lines broken."""

    parts: tuple[Doc, ...]


@dataclass(frozen=True, slots=True)
class Indent:
    """Lines broken inside are indented one level deeper."""

    parts: tuple[Doc, ...]


@dataclass(frozen=True, slots=True)
class IfBreak:
    """Text printed only when the enclosing group is broken (a trailing comma)."""

    text: str


@dataclass(frozen=True, slots=True)
class MaybeParenthesize:
    """An unsplittable expression that ruff wraps in parentheses when that makes it fit.

    ruff prints it as is if it fits; otherwise inside ``(`` ... ``)`` on its own
    indented line if it fits there; otherwise as is, overlong.
    """

    text: str


Doc: TypeAlias = str | Line | Group | Indent | IfBreak | MaybeParenthesize | tuple["Doc", ...]

_FLAT = 0
_BREAK = 1

_Cmd = tuple[int, int, Doc]


def bracketed(head: str, items: Sequence[Doc], tail: str, *, nested: bool) -> Group:
    """``head`` + items separated by commas + ``tail``, broken the way ruff breaks brackets.

    With ``nested``, the items form a group of their own (ruff's layout for subscripts
    and call arguments): the brackets break first and the items stay on one line if
    they fit there, else one per line with a trailing comma. Without it (a single
    class base), the items break together with the brackets.
    """
    body: list[Doc] = []
    for i, item in enumerate(items):
        if i:
            body.extend((",", LINE))
        body.append(item)
    if len(items) > 1:
        body.append(IfBreak(","))
    inner: Doc = Group(tuple(body)) if nested else tuple(body)
    return Group((head, Indent((SOFTLINE, inner)), SOFTLINE, tail))


def _fits(next_cmd: _Cmd, rest: list[_Cmd], width: int, *, all_lines: bool = False) -> bool:
    """Whether ``next_cmd`` fits in ``width`` columns, followed by the rest up to a line break.

    With ``all_lines``, every line of ``next_cmd`` (printed in its own mode) must fit,
    measured from its indentation.
    """
    cmds = [next_cmd]
    rest_index = len(rest)
    while True:
        if not cmds:
            if rest_index == 0:
                return True
            rest_index -= 1
            cmds.append(rest[rest_index])
            all_lines = False
            continue
        indent, mode, doc = cmds.pop()
        if isinstance(doc, str):
            width -= len(doc)
            if width < 0:
                return False
        elif isinstance(doc, tuple):
            cmds.extend((indent, mode, part) for part in reversed(doc))
        elif isinstance(doc, Indent):
            cmds.extend((indent + _INDENT, mode, part) for part in reversed(doc.parts))
        elif isinstance(doc, Group):
            cmds.extend((indent, mode, part) for part in reversed(doc.parts))
        elif isinstance(doc, Line):
            if mode == _BREAK:
                if not all_lines:
                    return True
                width = LINE_LENGTH - indent
            elif not doc.soft:
                width -= 1
        elif isinstance(doc, IfBreak):
            if mode == _BREAK:
                width -= len(doc.text)
        else:
            width -= len(doc.text)
            if width < 0:
                return False


def render(doc: Doc, indent: int) -> list[str]:
    """Prints ``doc`` as lines starting at column ``indent`` (indentation included)."""
    lines: list[str] = []
    current = " " * indent
    cmds: list[_Cmd] = [(indent, _BREAK, doc)]
    while cmds:
        ind, mode, item = cmds.pop()
        if isinstance(item, str):
            current += item
        elif isinstance(item, tuple):
            cmds.extend((ind, mode, part) for part in reversed(item))
        elif isinstance(item, Indent):
            cmds.extend((ind + _INDENT, mode, part) for part in reversed(item.parts))
        elif isinstance(item, Group):
            width = LINE_LENGTH - len(current)
            fits = mode == _FLAT or _fits((ind, _FLAT, item.parts), cmds, width)
            group_mode = _FLAT if fits else _BREAK
            cmds.extend((ind, group_mode, part) for part in reversed(item.parts))
        elif isinstance(item, Line):
            if mode == _BREAK:
                lines.append(current)
                current = " " * ind
            elif not item.soft:
                current += " "
        elif isinstance(item, IfBreak):
            if mode == _BREAK:
                current += item.text
        else:
            width = LINE_LENGTH - len(current)
            wrapped: Doc = ("(", Indent((SOFTLINE, item.text)), SOFTLINE, ")")
            if _fits((ind, _FLAT, item.text), cmds, width) or not _fits(
                (ind, _BREAK, wrapped), cmds, width, all_lines=True
            ):
                current += item.text
            else:
                cmds.append((ind, _BREAK, wrapped))
    lines.append(current)
    return lines
