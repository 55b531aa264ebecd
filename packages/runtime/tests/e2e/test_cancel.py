"""Early cancellation by the client cancels the server handler promptly, in every stream
type, whichever way the client walks away, on HTTP/1.1 and HTTP/2.

The handler records "started" and "cancelled" as events (``Observations``); the test
waits on them, never sleeps.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
from _support.servers import SERVERS, protocol_transports, run_server
from _support.service import EchoRequest, Observations, echo_app
from _support.tls import TLSFiles
from connectanyio.testing.v1 import testing_connect

from connect_anyio import ProtocolType

pytestmark = pytest.mark.anyio

# HTTP/1.1 and HTTP/2 (h2c); TLS changes nothing about cancellation.
PAIRS = [(p, t) for p, t in protocol_transports() if t != "tls"]
PAIR_IDS = [f"{p.name.lower()}-{t}" for p, t in PAIRS]
_tags = itertools.count()

Client = testing_connect.EchoServiceClient


class WalkedAway(Exception):
    """Raised by the test inside ``async with`` to leave the block early."""


async def _cancel_once_started(
    call: Callable[[], Awaitable[Any]], obs: Observations, tag: str
) -> None:
    """Runs ``call`` in a task and cancels that task once the handler has started."""
    async with anyio.create_task_group() as tg:

        async def caller() -> None:
            await call()
            raise AssertionError("the call returned instead of waiting for the handler")

        tg.start_soon(caller)
        with anyio.fail_after(10):
            await obs.started[tag].wait()
        tg.cancel_scope.cancel()


async def _requests(
    *messages: EchoRequest, hold: anyio.Event | None = None
) -> AsyncIterator[EchoRequest]:
    for message in messages:
        yield message
    if hold is not None:
        await hold.wait()


async def _stream_then_walk_away(
    open_stream: Callable[[], Any], how: str, obs: Observations, tag: str
) -> None:
    """Reads the first response of a stream whose handler then blocks, and walks away."""
    if how == "cancel":

        async def read_all() -> None:
            async with open_stream() as stream:
                async for _ in stream:
                    pass

        await _cancel_once_started(read_all, obs, tag)
    elif how == "break":
        async with open_stream() as stream:
            async for response in stream:
                assert response.index == 0
                break
    elif how == "aclose":
        stream = open_stream()
        async for response in stream:
            assert response.index == 0
            break
        await stream.aclose()
    elif how == "exit":
        with pytest.raises(WalkedAway):
            async with open_stream() as stream:
                first = await stream.__anext__()
                assert first.index == 0
                raise WalkedAway
    else:
        raise ValueError(how)


SCENARIOS = [
    ("unary", "cancel"),
    ("server_stream", "break"),
    ("server_stream", "aclose"),
    ("server_stream", "exit"),
    ("server_stream", "cancel"),
    ("client_stream", "cancel"),
    ("client_stream", "raise"),
    ("bidi", "break"),
    ("bidi", "aclose"),
    ("bidi", "exit"),
    ("bidi", "cancel"),
]


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize(("protocol", "transport"), PAIRS, ids=PAIR_IDS)
@pytest.mark.parametrize(("kind", "how"), SCENARIOS, ids=[f"{k}-{h}" for k, h in SCENARIOS])
async def test_client_walking_away_cancels_the_handler(
    kind: str, how: str, protocol: ProtocolType, transport: str, server: str, tls_files: TLSFiles
) -> None:
    obs = Observations()
    tag = f"cancel-{next(_tags)}"
    blocker = EchoRequest(tag=tag, wait_for_cancel=True)
    async with (
        run_server(echo_app(obs), server=server, transport=transport, tls=tls_files) as srv,
        srv.http_client() as http,
        Client(srv.url, protocol=protocol, http_client=http) as client,
    ):
        if kind == "unary":
            await _cancel_once_started(lambda: client.echo_post(blocker), obs, tag)
        elif kind == "server_stream":
            request = EchoRequest(tag=tag, wait_for_cancel=True, response_count=1)
            await _stream_then_walk_away(lambda: client.server_stream(request), how, obs, tag)
        elif kind == "client_stream":
            hold = anyio.Event()  # never set: the request stream stays open
            if how == "cancel":
                await _cancel_once_started(
                    lambda: client.client_stream(_requests(blocker, hold=hold)), obs, tag
                )
            else:
                await _client_stream_that_raises(client, blocker, obs, tag)
        else:
            # The first request gets an answer; the second blocks the handler.
            first = EchoRequest(text="first", response_count=1)
            if how == "cancel":
                # Over HTTP/1.1 (half duplex) the request stream must end for the call to start.
                hold = None if transport == "h1" else anyio.Event()

                async def bidi() -> None:
                    async with client.bidi(_requests(first, blocker, hold=hold)) as stream:
                        async for _ in stream:
                            pass

                await _cancel_once_started(bidi, obs, tag)
            else:
                await _stream_then_walk_away(
                    lambda: client.bidi(_requests(first, blocker)), how, obs, tag
                )
        await obs.wait_cancelled(tag)
        # The server is still fine afterwards.
        assert (await client.echo_post(EchoRequest(text="after"))).text == "after"


class RequestsFailed(Exception):
    pass


async def _client_stream_that_raises(
    client: Client, blocker: EchoRequest, obs: Observations, tag: str
) -> None:
    async def requests() -> AsyncIterator[EchoRequest]:
        yield blocker
        with anyio.fail_after(10):
            await obs.started[blocker.tag].wait()
        raise RequestsFailed

    # The caller's own exception comes back as it is.
    with pytest.raises(RequestsFailed):
        await client.client_stream(requests())
