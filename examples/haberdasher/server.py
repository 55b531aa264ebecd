"""The example application: ``python -m connect_anyio serve examples.haberdasher.server:app``."""

from __future__ import annotations

from connectanyio.example.v1.haberdasher_connect import HaberdasherASGIApplication

from .service import HaberdasherService

app = HaberdasherASGIApplication(HaberdasherService())
