"""The application the CLI tests serve in a subprocess (``native._cli_app:app``).

Its handlers log what they receive, so a test in another process can see that a call
is in flight on the server before it signals it; unary calls also log which event loop
runs them (for ``--loop``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import sniffio
from _support.service import EchoRequest, EchoResponse, EchoServiceImpl
from connectanyio.testing.v1 import testing_connect

logger = logging.getLogger("cli_app")


async def _logged(messages: AsyncIterator[EchoRequest]) -> AsyncIterator[EchoRequest]:
    async for message in messages:
        logger.info("received %s", message.text)
        yield message


class LoggingEcho(EchoServiceImpl):
    async def echo(self, request: EchoRequest, ctx: Any) -> EchoResponse:
        if sniffio.current_async_library() == "asyncio":
            loop = type(asyncio.get_running_loop())
            logger.info("event loop %s.%s", loop.__module__, loop.__qualname__)
        return await super().echo(request, ctx)

    async def client_stream(self, request: AsyncIterator[EchoRequest], ctx: Any) -> EchoResponse:
        async with aclosing(_logged(request)) as messages:
            return await super().client_stream(messages, ctx)

    async def bidi(
        self, request: AsyncIterator[EchoRequest], ctx: Any
    ) -> AsyncIterator[EchoResponse]:
        async with (
            aclosing(_logged(request)) as messages,
            aclosing(super().bidi(messages, ctx)) as responses,
        ):
            async for response in responses:
                yield response


app = testing_connect.EchoServiceASGIApplication(LoggingEcho())
