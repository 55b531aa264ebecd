"""The example Haberdasher: one implementation of every kind of RPC."""

from __future__ import annotations

from collections.abc import AsyncIterator

from connectanyio.example.v1.haberdasher_pb2 import Hat, Size

from connect_anyio import Code, ConnectError, RequestContext

COLORS = ["white", "black", "brown", "red", "blue"]
NAMES = ["bowler", "baseball cap", "top hat", "derby"]


class HaberdasherService:
    """Implements connectanyio.example.v1.Haberdasher."""

    async def make_hat(self, request: Size, ctx: RequestContext[Size, Hat]) -> Hat:
        if request.inches <= 0:
            raise ConnectError(Code.INVALID_ARGUMENT, "inches: I can't make a hat that small!")
        ctx.response_headers()["x-hat-maker"] = "connect-anyio"
        # Deterministic, so the demo prints the same thing every time.
        return Hat(
            size=request.inches,
            color=COLORS[request.inches % len(COLORS)],
            name=NAMES[request.inches % len(NAMES)],
        )

    async def make_similar_hats(
        self, request: Size, ctx: RequestContext[Size, Hat]
    ) -> AsyncIterator[Hat]:
        for i in range(3):
            yield Hat(size=request.inches + i, color=COLORS[i], name=f"hat #{i + 1}")

    async def collect_sizes(
        self, request: AsyncIterator[Size], ctx: RequestContext[Size, Hat]
    ) -> Hat:
        sizes = [size.inches async for size in request]
        if not sizes:
            raise ConnectError(Code.INVALID_ARGUMENT, "no sizes sent")
        return Hat(size=sum(sizes) // len(sizes), color="average", name="custom")

    async def make_various_hats(
        self, request: AsyncIterator[Size], ctx: RequestContext[Size, Hat]
    ) -> AsyncIterator[Hat]:
        async for size in request:
            yield Hat(size=size.inches, color="custom", name=f"size-{size.inches}")
