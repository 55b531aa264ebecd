"""A request stream the call no longer needs is closed by the client, at once.

When a client or bidi call ends before the caller's request generator does (the caller
left the response stream early, the server answered with an error), the client closes
that generator: its ``finally`` runs during the call, not whenever the garbage collector
gets to it (under trio an unfinished async generator is a ResourceWarning).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel
import pytest
from _support.servers import SERVERS, protocol_transports, run_server
from _support.service import EchoRequest, echo_app
from connectanyio.testing.v1 import testing_connect, testing_pb2

from connect_anyio import Code, ConnectError, ProtocolType

pytestmark = pytest.mark.anyio

PAIRS = [(p, t) for p, t in protocol_transports() if t != "tls"]
PAIR_IDS = [f"{p.name.lower()}-{t}" for p, t in PAIRS]


class _Requests:
    """A request generator that records when it is closed.

    ``more`` requests follow the first (``None``: endless, only for full-duplex calls).
    """

    def __init__(self, more: int | None = None) -> None:
        self.closed = anyio.Event()
        self.sent = 0
        self._more = more

    async def stream(self, first: EchoRequest) -> AsyncIterator[EchoRequest]:
        try:
            yield first
            while self._more is None or self.sent < self._more:
                self.sent += 1
                yield EchoRequest(text=f"more {self.sent}")
                await anyio.lowlevel.checkpoint()
        finally:
            self.closed.set()


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize(("protocol", "transport"), PAIRS, ids=PAIR_IDS)
async def test_leaving_a_bidi_call_early_closes_the_request_generator(
    protocol: ProtocolType, transport: str, server: str
) -> None:
    # Endless over HTTP/2 (full duplex); over HTTP/1.1 the requests are sent first.
    requests = _Requests(None if transport == "h2c" else 20)
    async with (
        run_server(echo_app(), server=server, transport=transport) as srv,
        srv.http_client() as http,
        testing_connect.EchoServiceClient(srv.url, protocol=protocol, http_client=http) as client,
    ):
        generator = requests.stream(EchoRequest(text="first"))
        stream = client.bidi(generator)
        with anyio.fail_after(10):
            async with stream:
                first = await stream.__anext__()
                assert first.text == "first"
            # Left the block early: the call is over, and so is the generator.
            await requests.closed.wait()
        # The client still works afterwards.
        assert (await client.echo_post(EchoRequest(text="after"))).text == "after"


# Not hypercorn over HTTP/2: its HTTP/2 fails the whole connection on DATA that arrives
# after a stream's response ended (KeyError, pgjones/hypercorn#329), and request DATA is
# always in flight when a server fails a stream the client is still sending on.
ERROR_CASES = [
    (protocol, transport, server)
    for protocol, transport in PAIRS
    for server in SERVERS
    if not (server == "hypercorn" and transport == "h2c")
]


@pytest.mark.parametrize(
    ("protocol", "transport", "server"),
    ERROR_CASES,
    ids=[f"{p.name.lower()}-{t}-{s}" for p, t, s in ERROR_CASES],
)
async def test_server_error_closes_the_request_generator(
    protocol: ProtocolType, transport: str, server: str
) -> None:
    endless = transport == "h2c"
    requests = _Requests(None if endless else 20)
    failing = EchoRequest(fail=testing_pb2.Failure(code="failed_precondition", message="stop"))
    async with (
        run_server(echo_app(), server=server, transport=transport) as srv,
        srv.http_client() as http,
        testing_connect.EchoServiceClient(srv.url, protocol=protocol, http_client=http) as client,
    ):
        with anyio.fail_after(10):
            with pytest.raises(ConnectError) as caught:
                async with client.bidi(requests.stream(failing)) as stream:
                    async for _ in stream:
                        pass
            assert caught.value.code is Code.FAILED_PRECONDITION
            await requests.closed.wait()
