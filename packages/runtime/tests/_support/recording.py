"""A server interceptor that records what each call's handler was given."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connect_anyio import Headers, RequestContext


@dataclass
class SeenCall:
    method: str
    http_method: str
    headers: Headers
    timeout_ms: float | None


@dataclass
class CallRecorder:
    """A metadata interceptor: ``calls`` lists every call the server ran, in order."""

    calls: list[SeenCall] = field(default_factory=list)

    async def on_start(self, ctx: RequestContext[Any, Any]) -> None:
        self.calls.append(
            SeenCall(
                method=ctx.method().name,
                http_method=ctx.http_method(),
                headers=ctx.request_headers().copy(),
                timeout_ms=ctx.timeout_ms(),
            )
        )

    async def on_end(self, token: None, ctx: RequestContext[Any, Any]) -> None:
        return None

    @property
    def last(self) -> SeenCall:
        assert self.calls, "the server ran no call"
        return self.calls[-1]
