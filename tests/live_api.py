"""Calls to a running kenshin's API (``kenshin up``, ``kenshin hes --api-port``) with the local
admin's credentials that the process kept in ``kenshin-admin.json`` next to its store, got the
way a real client gets them (client credentials at ``/oauth/token``)."""

from __future__ import annotations

import base64
import json
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any


def token(base_url: str, directory: Path) -> str:
    admin = json.loads((directory / "kenshin-admin.json").read_text(encoding="utf-8"))
    basic = base64.b64encode(f"{admin['client_id']}:{admin['client_secret']}".encode()).decode()
    request = urllib.request.Request(
        f"{base_url}/oauth/token",
        data=urllib.parse.urlencode({"grant_type": "client_credentials"}).encode(),
        headers={"Authorization": f"Basic {basic}"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return str(json.load(response)["access_token"])


def get(base_url: str, path: str, directory: Path, timeout: float = 5) -> bytes:
    request = urllib.request.Request(
        f"{base_url}{path}", headers={"Authorization": f"Bearer {token(base_url, directory)}"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return bytes(response.read())


def get_json(base_url: str, path: str, directory: Path) -> Any:
    return json.loads(get(base_url, path, directory))
