"""``nox -s demo``: serve the example Haberdasher, call it from asyncio, trio and raw HTTP.

The server runs as its own process, the way a user would start it: first our
native server (`python -m connect_anyio serve`), then hypercorn, to show the
same application on both. Everything stays on 127.0.0.1 and is shut down at
the end.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
from connectanyio.example.v1.haberdasher_connect import HaberdasherClient
from connectanyio.example.v1.haberdasher_pb2 import Size

from connect_anyio import ConnectError, HTTPClient, HTTPVersion, ProtocolType, ResponseMetadata

ROOT = Path(__file__).resolve().parents[2]
APP = "examples.haberdasher.server:app"
PROCEDURE = "/connectanyio.example.v1.Haberdasher/MakeHat"


@contextmanager
def server_process(kind: str) -> Iterator[str]:
    """Starts the example server on a free port; yields its URL; stops it gracefully."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "gen"), str(ROOT)])}
    if kind == "native":
        command = [sys.executable, "-m", "connect_anyio", "serve", APP, "--port", "0"]
        ready = re.compile(r"serving on (http://[\d.]+:\d+)")
    else:
        command = [sys.executable, "-m", "hypercorn", APP, "--bind", "127.0.0.1:0"]
        ready = re.compile(r"Running on (http://[\d.]+:\d+)")
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            match = ready.search(line)
            if match:
                break
        else:
            raise RuntimeError(f"{kind} server exited before serving")
        yield match.group(1)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def call_everything(url: str, backend: str) -> None:
    print(f"\n== our client under {backend} ({url})")
    async with HaberdasherClient(url) as client:
        with ResponseMetadata() as meta:
            hat = await client.make_hat(Size(inches=12))
        print(f"make_hat(12) -> {hat.color} {hat.name}, size {hat.size}", end="")
        print(f"  [x-hat-maker: {meta.headers().get('x-hat-maker')}]")

        hat = await client.make_hat(Size(inches=7), use_get=True)
        print(f"make_hat(7) via HTTP GET -> {hat.color} {hat.name}")

        try:
            await client.make_hat(Size(inches=0))
        except ConnectError as e:
            print(f"make_hat(0) -> error {e.code.value}: {e.message}")

        async with client.make_similar_hats(Size(inches=10)) as hats:
            print("make_similar_hats(10) ->", [f"{h.name} ({h.size})" async for h in hats])

        async def sizes() -> AsyncIterator[Size]:
            for inches in (10, 12, 14):
                yield Size(inches=inches)

        hat = await client.collect_sizes(sizes())
        print(f"collect_sizes(10, 12, 14) -> {hat.name}, size {hat.size}")

    # Full-duplex bidi needs HTTP/2: h2c with prior knowledge here.
    async with (
        HTTPClient(http_version=HTTPVersion.HTTP2) as http,
        HaberdasherClient(url, http_client=http) as client,
    ):
        send, receive = anyio.create_memory_object_stream[Size](1)
        async with client.make_various_hats(receive) as stream:
            for inches in (8, 9):
                await send.send(Size(inches=inches))
                print(f"make_various_hats: sent {inches}, got", (await stream.__anext__()).name)
            await send.aclose()

    async with HaberdasherClient(url, protocol=ProtocolType.GRPC) as client:
        hat = await client.make_hat(Size(inches=9))
        print(f"make_hat(9) over gRPC (h2c) -> {hat.color} {hat.name}")


def raw_http(url: str) -> None:
    print(f"\n== raw HTTP, the Connect wire format ({url})")
    request = urllib.request.Request(
        url + PROCEDURE,
        data=json.dumps({"inches": 12}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    print(f'POST {PROCEDURE}  Content-Type: application/json  {{"inches": 12}}')
    with urllib.request.urlopen(request, timeout=10) as response:
        print(
            f"-> {response.status} {response.headers['content-type']}: {response.read().decode()}"
        )
    bad = urllib.request.Request(
        url + PROCEDURE, data=b'{"inches": 0}', headers={"Content-Type": "application/json"}
    )
    try:
        urllib.request.urlopen(bad, timeout=10)
    except urllib.error.HTTPError as e:
        print(f'POST {{"inches": 0}} -> {e.code} {e.headers["content-type"]}: {e.read().decode()}')


def main() -> None:
    with server_process("native") as url:
        print(f"native server (python -m connect_anyio serve) on {url}")
        anyio.run(call_everything, url, "asyncio", backend="asyncio")
        anyio.run(call_everything, url, "trio", backend="trio")
        raw_http(url)
    with server_process("hypercorn") as url:
        print(f"\nthe same application on hypercorn, on {url}")

        async def one_call() -> None:
            async with HaberdasherClient(url) as client:
                hat = await client.make_hat(Size(inches=12))
                print(f"make_hat(12) -> {hat.color} {hat.name}")

        anyio.run(one_call, backend="asyncio")
        anyio.run(one_call, backend="trio")
    print("\nservers stopped; demo done")


if __name__ == "__main__":
    main()
