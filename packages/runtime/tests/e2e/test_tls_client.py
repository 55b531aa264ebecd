"""The client over TLS: client certificates a server requires, servers the client does
not trust, and ALPN (h2 when offered, HTTP/1.1 when not), against hypercorn and the
native server. Every failure is a clean ``ConnectError(unavailable)``, never a raw
``ssl`` error or a hang.

TLS is configured with the public helper, ``tls_context(ca_file=, cert_file=, key_file=)``.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
import trustme
from _support.servers import SERVERS, run_server
from _support.service import EchoRequest, echo_app
from _support.tls import TLSFiles
from connectanyio.testing.v1 import testing_connect
from e2e._servers import VersionRecorder, custom_server
from e2e._wire import relay

from connect_anyio import Code, ConnectError, HTTPClient, HTTPVersion, ProtocolType
from connect_anyio.client import tls_context

pytestmark = pytest.mark.anyio

Client = testing_connect.EchoServiceClient

# (protocol, client HTTP version): gRPC needs HTTP/2, so never HTTP1.
COMBOS = [
    (protocol, version)
    for protocol in ProtocolType
    for version in HTTPVersion
    if not (protocol is ProtocolType.GRPC and version is HTTPVersion.HTTP1)
]
COMBO_IDS = [f"{p.name.lower()}-{v.name.lower()}" for p, v in COMBOS]


async def _expect_unavailable(client: testing_connect.EchoServiceClient) -> ConnectError:
    with anyio.fail_after(10), pytest.raises(ConnectError) as caught:
        await client.echo(EchoRequest(text="refused"))
    assert caught.value.code is Code.UNAVAILABLE, caught.value
    return caught.value


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize(("protocol", "version"), COMBOS, ids=COMBO_IDS)
async def test_a_required_client_certificate(
    protocol: ProtocolType, version: HTTPVersion, server: str, tls_files: TLSFiles
) -> None:
    app = VersionRecorder(echo_app())
    async with run_server(
        app, server=server, transport="tls", tls=tls_files, require_client_cert=True
    ) as srv:
        with_cert = tls_context(
            ca_file=str(tls_files.ca),
            cert_file=str(tls_files.client_cert),
            key_file=str(tls_files.client_key),
        )
        async with (
            HTTPClient(http_version=version, ssl_context=with_cert) as http,
            Client(srv.url, protocol=protocol, http_client=http) as client,
        ):
            with anyio.fail_after(10):
                assert (await client.echo(EchoRequest(text="mine"))).text == "mine"
                request = EchoRequest(text="s", response_count=2)
                async with client.server_stream(request) as stream:
                    assert [r.index async for r in stream] == [0, 1]
        http2 = version is HTTPVersion.HTTP2 or (
            version is HTTPVersion.AUTO  # ALPN picks h2 when the server offers it
        )
        assert app.versions == ["2" if http2 else "1.1"] * 2

        without_cert = tls_context(ca_file=str(tls_files.ca))
        async with (
            HTTPClient(http_version=version, ssl_context=without_cert) as http,
            Client(srv.url, protocol=protocol, http_client=http) as client,
        ):
            await _expect_unavailable(client)
        # The server never ran a call for the client without a certificate.
        assert len(app.versions) == 2


@pytest.fixture(scope="module")
def stranger_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA that did not sign the server's certificate."""
    path = tmp_path_factory.mktemp("stranger") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize(("protocol", "version"), COMBOS, ids=COMBO_IDS)
async def test_a_server_the_client_does_not_trust(
    protocol: ProtocolType,
    version: HTTPVersion,
    server: str,
    tls_files: TLSFiles,
    stranger_ca: Path,
) -> None:
    app = VersionRecorder(echo_app())
    async with (
        run_server(app, server=server, transport="tls", tls=tls_files) as srv,
        HTTPClient(http_version=version, ssl_context=tls_context(ca_file=str(stranger_ca))) as http,
        Client(srv.url, protocol=protocol, http_client=http) as client,
    ):
        error = await _expect_unavailable(client)
        assert "CERTIFICATE_VERIFY_FAILED" in str(error.message)
        assert app.versions == []
        # Not a state the client gets stuck in: the same for the next call.
        await _expect_unavailable(client)


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("protocol", list(ProtocolType), ids=lambda p: p.name.lower())
async def test_auto_negotiates_h2_by_alpn(
    protocol: ProtocolType, server: str, tls_files: TLSFiles
) -> None:
    app = VersionRecorder(echo_app())
    async with (
        custom_server(app, server=server, tls=tls_files) as srv,
        relay(srv.port) as wire,
        HTTPClient(ssl_context=tls_context(ca_file=str(tls_files.ca))) as http,
        Client(f"https://127.0.0.1:{wire.port}", protocol=protocol, http_client=http) as client,
    ):
        for text in ("one", "two", "three"):
            assert (await client.echo(EchoRequest(text=text))).text == text
        assert app.versions == ["2"] * 3
        assert wire.accepted == 1


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize(
    "protocol", [ProtocolType.CONNECT, ProtocolType.GRPC_WEB], ids=lambda p: p.name.lower()
)
async def test_auto_falls_back_to_http1_when_the_server_offers_only_http1(
    protocol: ProtocolType, server: str, tls_files: TLSFiles
) -> None:
    app = VersionRecorder(echo_app())
    async with (
        custom_server(app, server=server, tls=tls_files, alpn=("http/1.1",)) as srv,
        relay(srv.port) as wire,
        HTTPClient(ssl_context=tls_context(ca_file=str(tls_files.ca))) as http,
        Client(f"https://127.0.0.1:{wire.port}", protocol=protocol, http_client=http) as client,
    ):
        for text in ("one", "two", "three"):
            assert (await client.echo(EchoRequest(text=text))).text == text
        request = EchoRequest(text="s", response_count=2)
        async with client.server_stream(request) as stream:
            assert [r.index async for r in stream] == [0, 1]
        assert app.versions == ["1.1"] * 4
        # One TLS connection learned the server's choice; then one HTTP/1.1 connection
        # served every call (the choice is remembered, not asked again per call).
        assert wire.accepted == 2


# HTTP/2 demanded: by the client's setting, or by gRPC.
NEEDS_H2 = [(p, v) for p, v in COMBOS if v is HTTPVersion.HTTP2 or p is ProtocolType.GRPC]


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize(
    ("protocol", "version"),
    NEEDS_H2,
    ids=[f"{p.name.lower()}-{v.name.lower()}" for p, v in NEEDS_H2],
)
async def test_http2_required_against_an_http1_only_server(
    protocol: ProtocolType, version: HTTPVersion, server: str, tls_files: TLSFiles
) -> None:
    """A clear unavailable, naming ALPN; the server runs no call."""
    app = VersionRecorder(echo_app())
    async with (
        custom_server(app, server=server, tls=tls_files, alpn=("http/1.1",)) as srv,
        HTTPClient(
            http_version=version, ssl_context=tls_context(ca_file=str(tls_files.ca))
        ) as http,
        Client(srv.url, protocol=protocol, http_client=http) as client,
    ):
        error = await _expect_unavailable(client)
        assert "HTTP/2" in str(error.message)
        assert "ALPN" in str(error.message)
        assert app.versions == []
