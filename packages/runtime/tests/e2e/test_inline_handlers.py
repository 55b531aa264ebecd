"""Unary handlers without any ``await`` run inline, without the disconnect watcher and its
task group (``Route.never_waits``): the same answers, errors and metadata on every
server, protocol and transport as handlers that wait."""

from __future__ import annotations

import pytest
from _support.servers import SERVERS, protocol_transports, run_server
from _support.service import (
    Ctx,
    EchoRequest,
    EchoResponse,
    EchoServiceImpl,
    _echo_metadata,
    _failure,
    _response,
)
from _support.tls import TLSFiles
from connectanyio.testing.v1 import testing_connect, testing_pb2

from connect_anyio import Code, ConnectError, ProtocolType, ResponseMetadata

pytestmark = pytest.mark.anyio

PAIRS = protocol_transports()
PAIR_IDS = [f"{p.name.lower()}-{t}" for p, t in PAIRS]
ECHO_POST = "/connectanyio.testing.v1.EchoService/EchoPost"


class _Inline(EchoServiceImpl):
    async def echo_post(self, request: EchoRequest, ctx: Ctx) -> EchoResponse:
        # No await anywhere: the call never suspends.
        _echo_metadata(ctx)
        if request.HasField("fail"):
            raise _failure(request.fail)
        if request.text == "crash":
            raise RuntimeError("secret")
        return _response(request, ctx)


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize(("protocol", "transport"), PAIRS, ids=PAIR_IDS)
async def test_inline_unary_calls(
    protocol: ProtocolType, transport: str, server: str, tls_files: TLSFiles
) -> None:
    app = testing_connect.EchoServiceASGIApplication(_Inline())
    assert app.router.routes[ECHO_POST].never_waits
    metadata = {"x-test-m": "meta"}
    async with (
        run_server(app, server=server, transport=transport, tls=tls_files) as srv,
        srv.http_client() as http,
        testing_connect.EchoServiceClient(srv.url, protocol=protocol, http_client=http) as client,
    ):
        with ResponseMetadata() as meta:
            response = await client.echo_post(EchoRequest(text="hi"), headers=metadata)
        assert response.text == "hi"
        assert response.headers["x-test-m"] == "meta"
        assert meta.headers()["x-test-m"] == "meta"
        assert meta.trailers()["x-test-m-trailer"] == "meta"

        failing = EchoRequest(fail=testing_pb2.Failure(code="not_found", message="gone"))
        with ResponseMetadata() as meta, pytest.raises(ConnectError) as info:
            await client.echo_post(failing, headers=metadata)
        assert info.value.code is Code.NOT_FOUND
        assert info.value.message == "gone"
        assert meta.trailers()["x-test-m-trailer"] == "meta"

        with pytest.raises(ConnectError) as info:
            await client.echo_post(EchoRequest(text="crash"))
        assert info.value.code is Code.INTERNAL
        assert "secret" not in info.value.message

        # A deadline changes nothing for a call that finishes at once.
        response = await client.echo_post(EchoRequest(text="timed"), timeout_ms=5000)
        assert response.text == "timed"
        assert 0 < response.timeout_ms <= 5000
