"""Problems are reported in CodeGeneratorResponse.error, with no files."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import CodegenTools


@pytest.mark.parametrize(
    ("parameter", "message"),
    [
        ("bogus=1", "unknown option 'bogus' (known options: method_names)"),
        ("method_names=camel", "invalid value 'camel' for option method_names"),
        ("method_names=", "invalid value '' for option method_names"),
        ("method_names", "invalid option 'method_names': expected key=value"),
        ("method_names=snake,method_names=proto", "option 'method_names' is given twice"),
    ],
)
def test_bad_parameter(codegen: CodegenTools, parameter: str, message: str) -> None:
    request = codegen.request(["acme/hats/v1/hats.proto"], parameter=parameter)
    response = codegen.generate(request)
    assert message in response.error
    assert not response.file


@pytest.mark.parametrize("parameter", ["", "method_names=snake", " method_names = proto ,"])
def test_good_parameter(codegen: CodegenTools, parameter: str) -> None:
    request = codegen.request(["acme/hats/v1/hats.proto"], parameter=parameter)
    assert codegen.files(codegen.generate(request))


def test_snake_case_collision(codegen: CodegenTools) -> None:
    request = codegen.request(["snake_collision.proto"], root=codegen.error_protos)
    response = codegen.generate(request)
    assert response.error == (
        "snake_collision.proto: methods GetFoo and getFoo of errors.v1.Collide both map to "
        "the Python method name 'get_foo'; rename one of them or use method_names=proto"
    )
    assert not response.file


def test_no_collision_with_proto_names(codegen: CodegenTools) -> None:
    request = codegen.request(
        ["snake_collision.proto"], root=codegen.error_protos, parameter="method_names=proto"
    )
    content = codegen.files(codegen.generate(request))["snake_collision_connect.py"]
    assert "    async def GetFoo(\n" in content
    assert "    async def getFoo(\n" in content


def test_service_name_collision(codegen: CodegenTools) -> None:
    request = codegen.request(["service_collision.proto"], root=codegen.error_protos)
    response = codegen.generate(request)
    assert response.error == (
        "service_collision.proto: services errors.v1.Foo and errors.v1.FooSync both generate "
        "the Python name 'FooSync'; rename one of them"
    )


def test_keyword_message_name(codegen: CodegenTools) -> None:
    """protoc's own Python code cannot name such a message either."""
    request = codegen.request(["keyword_message.proto"], root=codegen.error_protos)
    response = codegen.generate(request)
    assert response.error == (
        "message type errors.v1.class cannot be named in Python code: 'class' is a Python keyword"
    )
