"""``python -m connect_anyio serve``: the CLI in a subprocess, on both backends.

It prints where it listens on stdout (``--port 0`` picks a free port), shuts down
gracefully on SIGTERM or SIGINT (the call in flight finishes, the process exits 0), a
second signal cancels what is left, and its TLS flags serve HTTPS with client
certificates.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from _support.service import EchoRequest
from _support.tls import TLSFiles
from anyio.abc import ByteReceiveStream, Process
from connectanyio.testing.v1 import testing_connect
from native._helpers import WAIT

from connect_anyio import Code, ConnectError, HTTPClient, HTTPVersion

pytestmark = pytest.mark.anyio

TESTS = Path(__file__).resolve().parents[1]
ROOT = Path(__file__).resolve().parents[4]
Client = testing_connect.EchoServiceClient


class Lines:
    """What a process wrote on one of its pipes, line by line, as it comes."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._changed = anyio.Event()

    async def pump(self, stream: ByteReceiveStream) -> None:
        buffer = b""
        try:
            async for chunk in stream:
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                self.lines.extend(line.decode(errors="replace") for line in complete)
                self._changed.set()
                self._changed = anyio.Event()
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass

    async def wait_for(self, pattern: str) -> re.Match[str]:
        with anyio.fail_after(WAIT):
            while True:
                for line in self.lines:
                    if match := re.search(pattern, line):
                        return match
                await self._changed.wait()

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class Cli:
    def __init__(self, process: Process) -> None:
        self.process = process
        self.stdout = Lines()
        self.stderr = Lines()
        self.url = ""

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    async def exit_code(self) -> int:
        with anyio.fail_after(WAIT):
            return await self.process.wait()


def _env(*first: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [*first, str(TESTS), str(ROOT / "gen"), *filter(None, [env.get("PYTHONPATH")])]
    )
    return env


def _without_uvloop(tmp_path: Path) -> str:
    """A directory that, first on PYTHONPATH, makes ``import uvloop`` fail as if absent."""
    shadow = tmp_path / "no_uvloop" / "uvloop"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('uvloop hidden by the test')\n")
    return str(shadow.parent)


@asynccontextmanager
async def cli(*args: str, backend: str, path: tuple[str, ...] = ()) -> AsyncIterator[Cli]:
    env = _env(*path)
    command = [sys.executable, "-m", "connect_anyio", "serve", "native._cli_app:app"]
    command += ["--port", "0", "--backend", backend, *args]
    process = await anyio.open_process(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        async with anyio.create_task_group() as tg:
            running = Cli(process)
            assert process.stdout is not None
            assert process.stderr is not None
            tg.start_soon(running.stdout.pump, process.stdout)
            tg.start_soon(running.stderr.pump, process.stderr)
            match = await running.stdout.wait_for(r"listening on (\S+)")
            running.url = match.group(1)
            yield running
            # The test has made the process exit; its pipes end with it.
            with anyio.fail_after(WAIT):
                await process.wait()
        assert "Traceback" not in running.stderr.text, running.stderr.text
    finally:
        if process.returncode is None:
            process.kill()
            with anyio.CancelScope(shield=True):
                await process.wait()
        await process.aclose()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
@pytest.mark.parametrize("transport", ["h1", "h2c"])
async def test_signal_lets_the_call_in_flight_finish(
    transport: str, sig: signal.Signals, anyio_backend: str
) -> None:
    version = HTTPVersion.HTTP1 if transport == "h1" else HTTPVersion.HTTP2
    async with (
        cli("--graceful-timeout", "3600", backend=anyio_backend) as server,
        HTTPClient(http_version=version) as http,
        Client(server.url, http_client=http) as client,
    ):
        assert server.url.startswith("http://127.0.0.1:")
        go_on = anyio.Event()

        async def requests() -> AsyncIterator[EchoRequest]:
            yield EchoRequest(text="first")
            await go_on.wait()
            yield EchoRequest(text="second")

        async def signal_once_in_flight() -> None:
            await server.stderr.wait_for("received first")  # the handler has it
            server.signal(sig)
            await server.stderr.wait_for(f"{sig.name}: shutting down")
            await server.stderr.wait_for("stopped accepting")
            # No new connection gets in now.
            port = int(server.url.rsplit(":", 1)[1])
            with pytest.raises(OSError):
                stream = await anyio.connect_tcp("127.0.0.1", port)
                await stream.aclose()
            go_on.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(signal_once_in_flight)
            if transport == "h1":
                response = await client.client_stream(requests())
                assert list(response.request_texts) == ["first", "second"]
            else:
                async with client.bidi(requests()) as stream:
                    texts = [r.text async for r in stream]
                assert texts == ["first", "second"]
        assert await server.exit_code() == 0


async def test_second_signal_cancels_the_calls_in_flight(anyio_backend: str) -> None:
    async with (
        cli("--graceful-timeout", "3600", backend=anyio_backend) as server,
        HTTPClient(http_version=HTTPVersion.HTTP2) as http,
        Client(server.url, http_client=http) as client,
    ):

        async def requests() -> AsyncIterator[EchoRequest]:
            yield EchoRequest(text="first")
            await anyio.sleep_forever()
            yield EchoRequest(text="never")

        with pytest.raises(ConnectError) as failed:
            async with client.bidi(requests()) as stream:
                assert (await stream.__anext__()).text == "first"
                server.signal(signal.SIGTERM)
                await server.stderr.wait_for("SIGTERM: shutting down")
                server.signal(signal.SIGTERM)
                await server.stderr.wait_for("cancelling the calls in flight")
                await stream.__anext__()
        assert failed.value.code is Code.UNAVAILABLE
        assert await server.exit_code() == 0


async def test_tls_flags_serve_https_with_client_certificates(
    tls_files: TLSFiles, anyio_backend: str
) -> None:
    flags = ["--certfile", str(tls_files.server_cert), "--keyfile", str(tls_files.server_key)]
    flags += ["--client-ca", str(tls_files.ca)]
    async with cli(*flags, backend=anyio_backend) as server:
        assert server.url.startswith("https://127.0.0.1:")
        for version in (HTTPVersion.AUTO, HTTPVersion.HTTP1):  # ALPN: h2, then http/1.1
            context = tls_files.client_context(with_client_cert=True)
            async with (
                HTTPClient(http_version=version, ssl_context=context) as http,
                Client(server.url, http_client=http) as client,
            ):
                assert (await client.echo(EchoRequest(text="mutual tls"))).text == "mutual tls"
        # Without a client certificate the handshake fails.
        async with (
            HTTPClient(ssl_context=tls_files.client_context()) as http,
            Client(server.url, http_client=http) as client,
        ):
            with pytest.raises(ConnectError) as refused:
                await client.echo(EchoRequest(text="no certificate"))
            assert refused.value.code is Code.UNAVAILABLE
        server.signal(signal.SIGINT)
        assert await server.exit_code() == 0


@pytest.mark.parametrize(
    ("loop", "hidden", "expected"),
    [
        ("uvloop", False, "uvloop.Loop"),
        ("auto", False, "uvloop.Loop"),
        ("asyncio", False, "asyncio."),
        ("auto", True, "asyncio."),
    ],
    ids=["uvloop", "auto", "standard", "auto-without-uvloop"],
)
async def test_loop_flag_picks_the_event_loop_and_serves_h1_and_h2c(
    loop: str, hidden: bool, expected: str, tmp_path: Path, anyio_backend: str
) -> None:
    path = (_without_uvloop(tmp_path),) if hidden else ()
    async with cli("--loop", loop, backend="asyncio", path=path) as server:
        for version in (HTTPVersion.HTTP1, HTTPVersion.HTTP2):
            async with (
                HTTPClient(http_version=version) as http,
                Client(server.url, http_client=http) as client,
            ):
                assert (await client.echo(EchoRequest(text=loop))).text == loop
            match = await server.stderr.wait_for(r"event loop (\S+)")
            assert match.group(1).startswith(expected), server.stderr.text
        server.signal(signal.SIGTERM)
        assert await server.exit_code() == 0


async def test_loop_uvloop_serves_https(tls_files: TLSFiles, anyio_backend: str) -> None:
    flags = ["--certfile", str(tls_files.server_cert), "--keyfile", str(tls_files.server_key)]
    async with cli("--loop", "uvloop", *flags, backend="asyncio") as server:
        assert server.url.startswith("https://127.0.0.1:")
        for version in (HTTPVersion.AUTO, HTTPVersion.HTTP1):  # ALPN: h2, then http/1.1
            async with (
                HTTPClient(http_version=version, ssl_context=tls_files.client_context()) as http,
                Client(server.url, http_client=http) as client,
            ):
                assert (await client.echo(EchoRequest(text="tls"))).text == "tls"
        match = await server.stderr.wait_for(r"event loop (\S+)")
        assert match.group(1) == "uvloop.Loop"
        server.signal(signal.SIGINT)
        assert await server.exit_code() == 0


@pytest.mark.parametrize(
    ("backend", "hidden", "message"),
    [
        ("asyncio", True, "--loop uvloop: uvloop is not installed"),
        ("trio", False, "--loop uvloop applies to the asyncio backend only, not trio"),
    ],
    ids=["uvloop-missing", "trio"],
)
async def test_loop_uvloop_refused_with_a_clear_message(
    backend: str, hidden: bool, message: str, tmp_path: Path, anyio_backend: str
) -> None:
    path = (_without_uvloop(tmp_path),) if hidden else ()
    command = [sys.executable, "-m", "connect_anyio", "serve", "native._cli_app:app"]
    command += ["--port", "0", "--backend", backend, "--loop", "uvloop"]
    with anyio.fail_after(WAIT):
        done = await anyio.run_process(command, env=_env(*path), check=False)
    assert done.returncode != 0
    stderr = done.stderr.decode()
    assert message in stderr, stderr
    assert "Traceback" not in stderr
    assert b"listening" not in done.stdout
