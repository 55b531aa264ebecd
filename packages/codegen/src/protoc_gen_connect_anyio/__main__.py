"""``python -m protoc_gen_connect_anyio``: the same as the ``protoc-gen-connect-anyio`` command."""

from __future__ import annotations

from . import main

main()
