"""Shared test helpers.

Tests that need a server (PostgreSQL, Mosquitto) call :func:`require_service`: it skips with a
reason when the server is not reachable, unless ``KENSHIN_REQUIRE_SERVICES=1`` (CI sets it), in
which case the test fails instead, so CI can never pass by skipping.
"""

from __future__ import annotations

import os
import socket

import pytest

SERVICES = {
    "postgresql": ("127.0.0.1", 5432),
    "mosquitto": ("127.0.0.1", 1883),
}


def services_required() -> bool:
    return os.environ.get("KENSHIN_REQUIRE_SERVICES", "") not in ("", "0")


def require_service(name: str) -> tuple[str, int]:
    """(host, port) of a running service, or skip/fail as the environment demands."""
    host, port = SERVICES[name]
    try:
        with socket.create_connection((host, port), timeout=2):
            return host, port
    except OSError as exc:
        message = f"{name} is not reachable on {host}:{port} ({exc})"
        if services_required():
            pytest.fail(f"{message}; KENSHIN_REQUIRE_SERVICES=1 demands it", pytrace=False)
        pytest.skip(message)
