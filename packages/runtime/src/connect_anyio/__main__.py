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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m connect_anyio")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "serve", help="serve applications (module:attribute) over HTTP/1.1 and HTTP/2"
    )
    run.add_argument("apps", nargs="+", metavar="module:app")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8080)
    run.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    run.add_argument("--certfile", help="TLS certificate chain (PEM); enables HTTPS")
    run.add_argument("--keyfile", help="TLS private key (PEM)")
    run.add_argument("--client-ca", help="require client certificates signed by this CA (PEM)")
    defaults = ServerLimits()
    run.add_argument("--graceful-timeout", type=float, default=defaults.graceful_timeout)
    run.add_argument("--max-concurrent-streams", type=int, default=defaults.max_concurrent_streams)
    run.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    apps = [_load(target) for target in args.apps]
    context = None
    if args.certfile:
        context = server_tls_context(args.certfile, args.keyfile, client_ca=args.client_ca)
    elif args.client_ca:
        parser.error("--client-ca needs --certfile")
    limits = ServerLimits(
        graceful_timeout=args.graceful_timeout, max_concurrent_streams=args.max_concurrent_streams
    )
    run_server = partial(
        serve,
        *apps,
        host=args.host,
        port=args.port,
        ssl=context,
        limits=limits,
        handle_signals=True,
    )
    anyio.run(run_server, backend=args.backend)


if __name__ == "__main__":
    main()
