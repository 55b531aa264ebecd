"""``python -m connect_anyio serve module:app``: run applications on the native server."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from functools import partial
from typing import Any

import anyio

from ._serve import ServerLimits, serve, server_tls_context


def _load(target: str) -> Any:
    module_name, sep, attr = target.partition(":")
    if not sep or not attr:
        raise SystemExit(f"expected module:attribute, got {target!r}")
    sys.path.insert(0, ".")
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def backend_options(backend: str, loop: str) -> dict[str, Any]:
    """anyio.run backend options for ``--loop``: auto picks uvloop when it is importable."""
    if backend != "asyncio":
        if loop != "auto":
            raise SystemExit(f"--loop {loop} applies to the asyncio backend only, not {backend}")
        return {}
    if loop == "asyncio":
        return {}
    try:
        import uvloop  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
    except ImportError:
        if loop == "uvloop":
            raise SystemExit(
                "--loop uvloop: uvloop is not installed (pip install 'connect-anyio[uvloop]')"
            ) from None
        return {}
    return {"use_uvloop": True}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m connect_anyio")
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser(
        "serve", help="serve applications (module:attribute) over HTTP/1.1 and HTTP/2"
    )
    cmd.add_argument("apps", nargs="+", metavar="module:app")
    cmd.add_argument("--host", default="127.0.0.1")
    cmd.add_argument("--port", type=int, default=8080)
    cmd.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    cmd.add_argument(
        "--loop",
        choices=["auto", "asyncio", "uvloop"],
        default="auto",
        help="event loop for the asyncio backend (auto: uvloop when installed)",
    )
    cmd.add_argument("--certfile", help="TLS certificate chain (PEM); enables HTTPS")
    cmd.add_argument("--keyfile", help="TLS private key (PEM)")
    cmd.add_argument("--client-ca", help="require client certificates signed by this CA (PEM)")
    defaults = ServerLimits()
    limit_options = {
        "--max-connections": ("max_connections", int),
        "--max-concurrent-streams": ("max_concurrent_streams", int),
        "--max-header-bytes": ("max_header_bytes", int),
        "--header-timeout": ("header_timeout", float),
        "--idle-timeout": ("idle_timeout", float),
        "--graceful-timeout": ("graceful_timeout", float),
    }
    for flag, (field, kind) in limit_options.items():
        cmd.add_argument(
            flag,
            type=kind,
            default=getattr(defaults, field),
            help=f"default {getattr(defaults, field)}",
        )
    cmd.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    options = backend_options(args.backend, args.loop)
    apps = [_load(target) for target in args.apps]
    context = None
    if args.certfile:
        context = server_tls_context(args.certfile, args.keyfile, client_ca=args.client_ca)
    elif args.client_ca:
        parser.error("--client-ca needs --certfile")
    limits = ServerLimits(**{field: getattr(args, field) for field, _ in limit_options.values()})
    scheme = "https" if context is not None else "http"

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            addresses = await tg.start(
                partial(
                    serve,
                    *apps,
                    host=args.host,
                    port=args.port,
                    ssl=context,
                    limits=limits,
                    handle_signals=True,
                )
            )
            # On stdout, one line per address, for whoever started us (--port 0 picks a port).
            for host, port in addresses:
                shown = f"[{host}]" if ":" in host else host
                print(f"listening on {scheme}://{shown}:{port}", flush=True)

    anyio.run(run, backend=args.backend, backend_options=options)


if __name__ == "__main__":
    main()
