"""Proto comments as Python docstrings, written the way ``ruff format`` leaves them."""

from __future__ import annotations

__all__ = ["docstring"]

import re
from collections.abc import Iterable

# Characters Python (or ruff) could take for a line break, and other control
# characters: written as escapes so the docstring stays one logical string.
_ESCAPED = re.compile("[\x00-\x08\x0b-\x1f\x7f\x85\u2028\u2029]")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _expand_leading_tabs(line: str) -> str:
    stripped = line.lstrip(" \t")
    return line[: len(line) - len(stripped)].expandtabs(8) + stripped


def _clean(paragraphs: Iterable[str]) -> list[str]:
    """The text's lines: trailing space removed, indentation normalized as PEP 257 does."""
    lines: list[str] = []
    for paragraph in paragraphs:
        text = paragraph.replace("\r\n", "\n").replace("\r", "\n")
        para = [_expand_leading_tabs(line).rstrip() for line in text.split("\n")]
        while para and not para[0]:
            para.pop(0)
        while para and not para[-1]:
            para.pop()
        if not para:
            continue
        if lines:
            lines.append("")
        lines.extend(para)
    if not lines:
        return []
    # ruff keeps the first line's text and strips the indentation the other lines
    # share (like inspect.cleandoc); doing the same here keeps the output stable.
    lines[0] = lines[0].lstrip()
    rest = [line for line in lines[1:] if line]
    margin = min((len(line) - len(line.lstrip(" ")) for line in rest), default=0)
    return [lines[0]] + [line[margin:] for line in lines[1:]]


def docstring(paragraphs: Iterable[str], indent: int) -> list[str]:
    """The lines of a docstring holding ``paragraphs`` (none if they are all blank)."""
    lines = _clean(paragraphs)
    if not lines:
        return []
    escaped = [_ESCAPED.sub(_escape_char, line.replace("\\", "\\\\")) for line in lines]
    # A quote may not open or close the text (it would merge with the delimiters),
    # and three in a row would end the string.
    head = ""
    if escaped[0].startswith('"'):
        head, escaped[0] = '\\"', escaped[0][1:]
    tail = ""
    if len(escaped) == 1 and escaped[0].endswith('"'):
        tail, escaped[0] = '\\"', escaped[0][:-1]
    escaped = [line.replace('"""', '""\\"') for line in escaped]
    escaped[0] = head + escaped[0]
    escaped[-1] += tail
    pad = " " * indent
    if len(escaped) == 1:
        return [f'{pad}"""{escaped[0]}"""']
    out = [f'{pad}"""{escaped[0]}']
    out.extend(f"{pad}{line}" if line else "" for line in escaped[1:])
    out.append(f'{pad}"""')
    return out
