"""The HTTP API (FastAPI): meters and readings as JSON under ``/api/v1``; see docs/api.md."""

from kenshin.api.app import API_PREFIX, create_app

__all__ = ["API_PREFIX", "create_app"]
