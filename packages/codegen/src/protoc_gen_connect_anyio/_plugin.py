"""The protoc plugin protocol: a CodeGeneratorRequest in, a CodeGeneratorResponse out."""

from __future__ import annotations

__all__ = ["EMIT_SYNC_RUNTIME", "MAXIMUM_EDITION", "MINIMUM_EDITION", "generate", "main"]

import sys

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2

from ._generator import GenerationError, TypeIndex, generate_file, parse_parameter

EMIT_SYNC_RUNTIME = True
"""Whether to emit ``FooWSGIApplication`` and ``FooClientSync``.

They build on ``connect_anyio.server.ConnectWSGIApplication`` and
``connect_anyio.client.ConnectClientSync``/``ResponseStreamSync``; switch this off
only to generate for a runtime without them.
"""

MINIMUM_EDITION = descriptor_pb2.EDITION_PROTO2
MAXIMUM_EDITION = descriptor_pb2.EDITION_2024
"""The plugin reads only service and method names, types, streaming flags, the
``idempotency_level`` and ``deprecated`` options and comments; editions up to 2024
change none of them."""


def generate(request: plugin_pb2.CodeGeneratorRequest) -> plugin_pb2.CodeGeneratorResponse:
    """Generates the ``_connect.py`` modules for the files protoc asks for."""
    response = plugin_pb2.CodeGeneratorResponse(
        supported_features=plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
        | plugin_pb2.CodeGeneratorResponse.FEATURE_SUPPORTS_EDITIONS,
        minimum_edition=MINIMUM_EDITION,
        maximum_edition=MAXIMUM_EDITION,
    )
    try:
        options = parse_parameter(request.parameter)
        index = TypeIndex(request.proto_file)
        files = {file.name: file for file in request.proto_file}
        for name in request.file_to_generate:
            generated = generate_file(
                files[name], index, options, emit_sync_runtime=EMIT_SYNC_RUNTIME
            )
            if generated is not None:
                path, content = generated
                response.file.add(name=path, content=content)
    except GenerationError as e:
        del response.file[:]
        response.error = str(e)
    return response


def main() -> None:
    """Runs the plugin: reads the request from stdin, writes the response to stdout."""
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    response = generate(request)
    sys.stdout.buffer.write(response.SerializeToString())
    sys.stdout.buffer.flush()
