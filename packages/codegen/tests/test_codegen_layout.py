"""The generator's output is exactly what ``ruff format`` prints, whatever the name lengths.

The generator lays out code itself (it does not run ruff). These tests generate code
for names of every length around the points where ruff starts breaking lines, and
for awkward comments, and check that ruff would change nothing.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2

if TYPE_CHECKING:
    from conftest import CodegenTools


MethodSpec = tuple[str, str, str, bool, bool]  # name, input, output, client/server streaming


def _file(
    name: str,
    package: str,
    messages: list[str],
    services: list[tuple[str, list[MethodSpec]]],
    *,
    dependencies: tuple[str, ...] = (),
    comments: dict[tuple[int, ...], str] | None = None,
) -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(
        name=name, package=package, syntax="proto3", dependency=dependencies
    )
    for message in messages:
        outer, _, inner = message.partition(".")
        existing = [m for m in file.message_type if m.name == outer]
        top = existing[0] if existing else file.message_type.add(name=outer)
        if inner:
            top.nested_type.add(name=inner)
    for service_name, methods in services:
        service = file.service.add(name=service_name)
        for method_name, input_type, output_type, client, server in methods:
            service.method.add(
                name=method_name,
                input_type=input_type,
                output_type=output_type,
                client_streaming=client,
                server_streaming=server,
            )
    for path, text in (comments or {}).items():
        file.source_code_info.location.add(path=path, leading_comments=text)
    return file


def _check_with_ruff(outputs: dict[str, str], tmp_path: Path) -> None:
    for name, content in outputs.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    names = sorted(outputs)
    fmt = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--isolated", "--no-cache", "--diff", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    # Long names make long lines ruff cannot shorten (E501); everything else must pass.
    lint = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--isolated",
            "--no-cache",
            "--target-version=py310",
            "--select=E,F,W,I,UP,B",
            "--ignore=E501",
            *names,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def _generate(
    codegen: CodegenTools, files: list[descriptor_pb2.FileDescriptorProto]
) -> dict[str, str]:
    """The generated modules, plus each without the sync runtime's classes (``*.async.py``)."""
    request = plugin_pb2.CodeGeneratorRequest(
        file_to_generate=[f.name for f in files if f.service], proto_file=files
    )
    outputs = codegen.files(codegen.generate(request))
    for name, content in codegen.files(codegen.generate(request, emit_sync_runtime=False)).items():
        outputs[name.removesuffix(".py") + ".async.py"] = content
    return outputs


def test_name_lengths(codegen: CodegenTools, tmp_path: Path) -> None:
    """Service, message, package and path lengths across every line-breaking threshold."""
    files: list[descriptor_pb2.FileDescriptorProto] = []
    shared = _file(
        "shared/" + "d" * 60 + "/deep/types.proto",
        "shared",
        ["Shared", "Outer.InnerMessageWithALongName"],
        [],
    )
    files.append(shared)
    for i in range(90):
        service = "S" + "v" * (i % 64)
        package = "p" + "k" * ((i * 7) % 70)
        message_in = "In" + "x" * i
        message_out = "Out" + "y" * ((i * 5) % 90)
        directory = "dir" + "-d" * (i % 40)
        name = f"{directory}/file_{i}.proto"
        methods: list[MethodSpec] = [
            (f"Unary{i}", f".{package}.{message_in}", f".{package}.{message_out}", False, False),
            (f"Server{i}", f".{package}.{message_in}", f".{package}.{message_out}", False, True),
            (f"Client{i}", f".{package}.{message_in}", f".{package}.{message_out}", True, False),
            (f"Bidi{i}", f".{package}.{message_out}", f".{package}.{message_in}", True, True),
            ("Mixed", ".shared.Outer.InnerMessageWithALongName", ".shared.Shared", False, False),
        ]
        files.append(
            _file(
                name,
                package,
                [message_in, message_out],
                [(service, methods)],
                dependencies=(shared.name,),
            )
        )
    _check_with_ruff(_generate(codegen, files), tmp_path)


def test_total_lengths(codegen: CodegenTools, tmp_path: Path) -> None:
    """Every length of package + service + method + message, one character apart."""
    files: list[descriptor_pb2.FileDescriptorProto] = []
    for n in range(100):
        package = "q" + "k" * n
        message = f".{package}.M" + "m" * (n // 2)
        methods: list[MethodSpec] = [
            ("Get" + "g" * (n // 3), message, message, False, False),
            ("Watch" + "w" * (n // 4), message, message, True, True),
        ]
        service = "Svc" + "s" * (n // 5)
        files.append(
            _file(f"t/{n}.proto", package, [message.rpartition(".")[2]], [(service, methods)])
        )
    _check_with_ruff(_generate(codegen, files), tmp_path)


def test_colliding_module_names(codegen: CodegenTools, tmp_path: Path) -> None:
    """Modules with the same file name in many directories get distinct aliases."""
    files = [
        _file(f"{d}/types.proto", f"pkg{n}", ["T"], [])
        for n, d in enumerate(["a", "b/a", "c/b/a", "a_b", "a/b", "x-y/z", "x_y/z"])
    ]
    methods: list[MethodSpec] = [
        (f"M{n}", f".pkg{n}.T", f".pkg{(n + 1) % len(files)}.T", False, False)
        for n in range(len(files))
    ]
    files.append(
        _file(
            "a/types_service.proto",
            "svc",
            [],
            [("Svc", methods)],
            dependencies=tuple(f.name for f in files),
        )
    )
    outputs = _generate(codegen, files)
    content = outputs["a/types_service_connect.py"]
    for module in ("a.types_pb2", "b.a.types_pb2", "c.b.a.types_pb2", "a_b.types_pb2"):
        package, _, name = module.rpartition(".")
        assert f"from {package} import {name}" in content
    _check_with_ruff(outputs, tmp_path)


AWKWARD_COMMENTS = [
    ' "Starts with a quote',
    ' Ends with a quote"',
    ' """',
    ' ""',
    ' "',
    " \\",
    " Ends with a backslash\\",
    ' Has """ and """" and \\"""\\ inside',
    " Tabs\tinside\tand\n\tat the start of a line\n",
    "   Indented first line\n   and the rest\n",
    " First\n\n     indented block\n     second line\n",
    " Trailing spaces   \n   \n more  \n",
    " Unicode: é, ü, 漢字, and a line\u2028separator, \x0c form feed, \x00 nul",
    "\n\n Leading and trailing blank lines\n\n\n",
    " " + "word " * 30,
    " A line that is exactly long enough to touch the limit when quoted: xxxxxxxxxxxxx",
    " Back\\slashes \\n \\t \\\\ and 'single' quotes '''",
]


def test_awkward_comments(codegen: CodegenTools, tmp_path: Path) -> None:
    """Comments become docstrings that ruff leaves alone and Python parses back."""
    methods: list[MethodSpec] = [
        (f"M{n}", ".c.Msg", ".c.Msg", False, False) for n in range(len(AWKWARD_COMMENTS))
    ]
    comments: dict[tuple[int, ...], str] = {
        (6, 0, 2, n): text for n, text in enumerate(AWKWARD_COMMENTS)
    }
    comments[(6, 0)] = AWKWARD_COMMENTS[0]
    files = [_file("c/comments.proto", "c", ["Msg"], [("Commented", methods)], comments=comments)]
    outputs = _generate(codegen, files)
    _check_with_ruff(outputs, tmp_path)
    tree = ast.parse(outputs["c/comments_connect.py"])
    protocol = next(
        node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Commented"
    )
    docs = [
        ast.get_docstring(node, clean=True)
        for node in protocol.body
        if isinstance(node, ast.AsyncFunctionDef)
    ]
    assert docs[1] == 'Ends with a quote"'
    assert docs[2] == '"""'
    assert docs[5] == "\\"
    assert docs[7] == 'Has """ and """" and \\"""\\ inside'
    assert docs[12] is not None
    assert "\u2028" in docs[12]
    assert "\x00" in docs[12]
    assert docs[13] == "Leading and trailing blank lines"
