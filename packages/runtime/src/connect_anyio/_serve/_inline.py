"""Running a call in the task that received it, as if it had a task of its own."""

from __future__ import annotations

import contextvars
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any


def _nothing() -> None:
    pass


@types.coroutine
def drive(
    coro: Coroutine[Any, Any, None], on_suspend: Callable[[], None] = _nothing
) -> Generator[Any, Any, None]:
    """Awaits ``coro`` in a copy of the current context, as a task of its own would run
    it (context variables a handler sets stay with its call), and calls ``on_suspend``
    when it first waits. Values and exceptions, cancellation included, pass through
    both ways as with ``await``."""
    run = contextvars.copy_context().run
    try:
        signal = run(coro.send, None)
    except StopIteration:
        return
    on_suspend()
    while True:
        try:
            value = yield signal
        except GeneratorExit:
            run(coro.close)
            raise
        except BaseException as exc:
            try:
                signal = run(coro.throw, exc)
            except StopIteration:
                return
        else:
            try:
                signal = run(coro.send, value)
            except StopIteration:
                return
