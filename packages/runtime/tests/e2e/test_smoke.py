"""A first end-to-end check of every server x transport x protocol (the matrix lives elsewhere)."""

from __future__ import annotations

import pytest
from _support.servers import SERVERS, protocol_transports, run_server
from _support.service import EchoRequest, echo_app
from _support.tls import TLSFiles
from connectanyio.testing.v1 import testing_connect

from connect_anyio import ProtocolType

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize(("protocol", "transport"), protocol_transports())
async def test_unary_round_trip(
    server: str, transport: str, protocol: ProtocolType, tls_files: TLSFiles
) -> None:
    app = echo_app()
    async with (
        run_server(app, server=server, transport=transport, tls=tls_files) as srv,
        srv.http_client() as http,
        testing_connect.EchoServiceClient(srv.url, protocol=protocol, http_client=http) as client,
    ):
        response = await client.echo(EchoRequest(text="hello"))
    assert response.text == "hello"
