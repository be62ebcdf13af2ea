"""The local console's credentials (issue 14 item 6): ``kenshin up`` and ``kenshin hes
--api-port`` register a ``local-admin`` when the store has no staff yet, and keep its client id
and secret in ``kenshin-admin.json`` next to the store (0600, in the git-ignored data directory),
so the same secret works after every restart and ``make run`` can say how to get a token.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from kenshin.broute.credentials import CredentialRegistry, Medium, SessionTable
from kenshin.errors import InvalidSetting
from kenshin.secrecy import make_private_dir
from kenshin.security.principals import Party, Principal
from kenshin.security.service import LOCAL_ADMIN, Security

ADMIN_FILE = "kenshin-admin.json"


@dataclass(frozen=True, slots=True)
class LocalAdmin:
    client_id: str
    path: Path
    registered: bool  # False: staff existed already, the file was left as it was


def _read(path: Path) -> str | None:
    if not path.exists():
        return None
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        return str(body["client_secret"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidSetting(f"{path}: not a kenshin admin file ({exc}); remove it") from None


def _write(path: Path, secret: str) -> None:
    make_private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".admin-", suffix=".json")
    try:
        os.fchmod(fd, 0o600)  # SPEC X3: a secret
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"client_id": LOCAL_ADMIN, "client_secret": secret}, fh, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ensure_local_admin(security: Security, directory: Path) -> LocalAdmin:
    """Register ``local-admin`` (with the secret kept in ``directory``, or a new one written
    there) unless the store has staff already."""
    path = directory / ADMIN_FILE
    secret = security.ensure_local_admin(_read(path))
    if secret is not None:
        _write(path, secret)
    return LocalAdmin(LOCAL_ADMIN, path, secret is not None)


def token_hint(admin: LocalAdmin, base_url: str) -> str:
    """How to get a token, for the start-up message."""
    return (
        f"API credentials: client {admin.client_id}, secret in {admin.path}; a token: "
        f"curl -s -u {admin.client_id}:SECRET -d grant_type=client_credentials "
        f"{base_url}/oauth/token"
    )


def cut_broute_devices(
    security: Security,
    registry: CredentialRegistry,
    sessions: Callable[[], Iterable[SessionTable]],
) -> None:
    """The kill switch reaches the B-route (SPEC X6 ③): disconnecting a principal of party
    ``broute_device`` revokes the B-route credentials of its supply points (it cannot join
    again) and ends its live sessions (the next request of a joined device is refused).
    Reconnecting it is an operator issuing new credentials (``POST …/broute-credentials``)."""

    def cut(principal: Principal, reason: str) -> None:
        if principal.party is not Party.BROUTE_DEVICE:
            return
        for supply_point_id in sorted(principal.supply_points):
            registry.revoke(supply_point_id)
            for table in sessions():
                for medium in Medium:
                    for session in table.active(supply_point_id, medium):
                        table.end(session, f"disconnected: {reason}")

    security.on_disconnect.append(cut)
