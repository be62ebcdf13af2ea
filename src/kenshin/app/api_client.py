"""A small client of kenshin's own API for the commands that act on a running system
(``kenshin connections …``; issue 14 item 6): credentials from the environment
(``KENSHIN_CLIENT_ID``, ``KENSHIN_CLIENT_SECRET``) or, on the console of the installation, the
local admin's file; a token from ``/oauth/token``; the API's refusals as kenshin's errors, so the
command says them in one line.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from kenshin.app.access import ADMIN_FILE
from kenshin.app.stores import DATA_DIR
from kenshin.errors import (
    AlreadyExists,
    Forbidden,
    InvalidInput,
    KenshinError,
    NotFound,
    TransportError,
    Unauthenticated,
)

API_ENV = "KENSHIN_API"
ID_ENV = "KENSHIN_CLIENT_ID"
SECRET_ENV = "KENSHIN_CLIENT_SECRET"
DEFAULT_API = "http://127.0.0.1:8000"
TIMEOUT_S = 10.0

_BY_STATUS: dict[int, type[KenshinError]] = {
    400: InvalidInput,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: AlreadyExists,
    422: InvalidInput,
}


def credentials(admin_file: Path | None = None) -> tuple[str, str]:
    """(client id, secret): from the environment, else the local admin's file."""
    client_id, secret = os.environ.get(ID_ENV), os.environ.get(SECRET_ENV)
    if client_id and secret:
        return client_id, secret
    if client_id or secret:
        raise InvalidInput(f"set both {ID_ENV} and {SECRET_ENV}, or neither")
    path = admin_file or DATA_DIR / ADMIN_FILE
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        return str(body["client_id"]), str(body["client_secret"])
    except FileNotFoundError:
        raise InvalidInput(
            f"no API credentials: set {ID_ENV} and {SECRET_ENV} (or run where {path} exists)"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"{path}: not a kenshin admin file ({exc})") from None


class ApiClient:
    def __init__(self, base_url: str | None, client_id: str, secret: str) -> None:
        self.base_url = (base_url or os.environ.get(API_ENV) or DEFAULT_API).rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise InvalidInput(f"--api {self.base_url!r}: give an http:// or https:// URL")
        self._client_id, self._secret = client_id, secret
        self._token: str | None = None

    def _open(self, request: urllib.request.Request) -> Any:
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise _refusal(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TransportError(f"cannot reach the API at {self.base_url}: {reason}") from None

    def token(self) -> str:
        if self._token is None:
            basic = base64.b64encode(f"{self._client_id}:{self._secret}".encode()).decode()
            answer = self._open(
                urllib.request.Request(
                    f"{self.base_url}/oauth/token",
                    data=b"grant_type=client_credentials",
                    headers={"Authorization": f"Basic {basic}"},
                )
            )
            self._token = str(answer["access_token"])
        return self._token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.token()}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(
            f"{self.base_url}{path}", data=data, headers=headers, method=method
        )
        return self._open(request)


def _refusal(exc: urllib.error.HTTPError) -> KenshinError:
    try:
        body = json.loads(exc.read())
        error = body.get("error")
        message = (
            error.get("message")
            if isinstance(error, dict)
            else body.get("error_description") or error
        )
    except (ValueError, AttributeError):
        message = exc.reason
    kind = _BY_STATUS.get(exc.code, KenshinError)
    return kind(f"the API refused ({exc.code}): {message}")
