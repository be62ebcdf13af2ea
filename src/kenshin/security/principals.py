"""Who may use the system (issue 14; SPEC X2, X3, X5, X6): utility staff with roles, external
organisations with the supply points they serve, and devices and partner servers. Each is a
:class:`Principal`; its name is also its OAuth client id and login name.

A principal holds its secret's hash (``kenshin.security.secrets``), never the secret, and its
repr shows neither. ``active`` False is the kill switch (X6 ③): the principal is cut off and every
token issued to it before ``tokens_after`` is dead, also after it is reconnected.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from kenshin.errors import InvalidInput


class Kind(StrEnum):
    STAFF = "staff"  # the utility's people
    ORGANISATION = "organisation"  # an external party using the data (X5, X6)
    DEVICE = "device"  # a B-route device, an IoT-route device, a partner server


class Role(StrEnum):
    """Staff roles (after IEC 62351-8). Requester and approver are never the same person: the
    control issue uses ``approver``."""

    VIEWER = "viewer"  # reads meter data and the system's state
    ENGINEER = "engineer"  # and corrects values (manual edits)
    OPERATOR = "operator"  # and commands meters, polls, issues B-route credentials
    APPROVER = "approver"  # releases mass commands another person asked for
    SECURITY_ADMIN = "security_admin"  # principals, the audit trail, the kill switch


class Party(StrEnum):
    """What kind of party an organisation or device is (its rules differ, X6 ④)."""

    RETAILER = "retailer"
    GENERATOR = "generator"
    AGGREGATOR = "aggregator"
    DISTRIBUTION_OPERATOR = "distribution_operator"
    EMS_OPERATOR = "ems_operator"
    GAS_COMPANY = "gas_company"
    WATER_COMPANY = "water_company"
    BROUTE_DEVICE = "broute_device"
    IOT_DEVICE = "iot_device"
    PARTNER_SERVER = "partner_server"


ORGANISATION_PARTIES = frozenset(
    {
        Party.RETAILER,
        Party.GENERATOR,
        Party.AGGREGATOR,
        Party.DISTRIBUTION_OPERATOR,
        Party.EMS_OPERATOR,
        Party.GAS_COMPANY,
        Party.WATER_COMPANY,
    }
)
DEVICE_PARTIES = frozenset({Party.BROUTE_DEVICE, Party.IOT_DEVICE, Party.PARTNER_SERVER})

# OAuth scopes a machine client may hold; a token carries those it asked for (default: all)
SCOPES = frozenset({"meters:read", "readings:read", "events:read", "metrics:read"})

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,62}")
_SUPPLY_POINT = re.compile(r"[0-9]{22}")


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    kind: Kind
    roles: frozenset[Role] = frozenset()  # staff only
    party: Party | None = None  # organisations and devices
    supply_points: frozenset[str] = frozenset()  # what an organisation may see (object scope)
    scopes: frozenset[str] = frozenset()  # what a machine client may ask a token for
    rate_per_s: float = 20.0  # requests per second, bursts of twice that
    boundary: str = ""  # responsibility boundary and incident contact (責任分界点, X6 ④)
    active: bool = True  # False: disconnected (kill switch, X6 ③)
    tokens_after_us: int = 0  # tokens issued before this instant are refused
    secret_hash: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise InvalidInput(
                f"principal name {self.name!r}: 2–63 characters of a–z, 0–9, '.', '_', '-', "
                "starting with a letter or digit"
            )
        if self.kind is Kind.STAFF:
            if not self.roles:
                raise InvalidInput(f"staff {self.name}: give at least one role")
            if self.party is not None or self.supply_points:
                raise InvalidInput(f"staff {self.name}: no party or supply points")
        else:
            if self.roles:
                raise InvalidInput(f"{self.kind} {self.name}: roles are for staff")
            allowed = ORGANISATION_PARTIES if self.kind is Kind.ORGANISATION else DEVICE_PARTIES
            if self.party not in allowed:
                raise InvalidInput(
                    f"{self.kind} {self.name}: party must be one of "
                    f"{', '.join(sorted(p.value for p in allowed))}"
                )
        unknown = self.scopes - SCOPES
        if unknown:
            raise InvalidInput(
                f"unknown scope(s) {', '.join(sorted(unknown))}; one of {', '.join(sorted(SCOPES))}"
            )
        bad = [s for s in self.supply_points if not _SUPPLY_POINT.fullmatch(s)]
        if bad:
            raise InvalidInput(f"supply point id {bad[0]!r} is not 22 digits")
        if not 0 < self.rate_per_s <= 10_000:
            raise InvalidInput(f"rate_per_s must be in (0, 10000], got {self.rate_per_s}")

    def has_any(self, roles: frozenset[Role]) -> bool:
        return not self.roles.isdisjoint(roles)

    def replace(self, **changes: Any) -> Principal:
        return dataclasses.replace(self, **changes)

    # ---- stored form (one JSON document per principal, kenshin.mdms.store.PrincipalBook)

    def document(self) -> str:
        return json.dumps(
            {
                "kind": self.kind.value,
                "roles": sorted(r.value for r in self.roles),
                "party": None if self.party is None else self.party.value,
                "supply_points": sorted(self.supply_points),
                "scopes": sorted(self.scopes),
                "rate_per_s": self.rate_per_s,
                "boundary": self.boundary,
                "active": self.active,
                "tokens_after_us": self.tokens_after_us,
                "secret_hash": self.secret_hash,
            },
            sort_keys=True,
        )

    @classmethod
    def from_document(cls, name: str, document: str) -> Principal:
        doc = json.loads(document)
        return cls(
            name=name,
            kind=Kind(doc["kind"]),
            roles=frozenset(Role(r) for r in doc["roles"]),
            party=None if doc["party"] is None else Party(doc["party"]),
            supply_points=frozenset(doc["supply_points"]),
            scopes=frozenset(doc["scopes"]),
            rate_per_s=float(doc["rate_per_s"]),
            boundary=str(doc["boundary"]),
            active=bool(doc["active"]),
            tokens_after_us=int(doc["tokens_after_us"]),
            secret_hash=str(doc["secret_hash"]),
        )

    def view(self) -> dict[str, Any]:
        """What the API shows of a principal: everything but the secret's hash."""
        return {
            "name": self.name,
            "kind": self.kind.value,
            "roles": sorted(r.value for r in self.roles),
            "party": None if self.party is None else self.party.value,
            "supply_points": len(self.supply_points),
            "scopes": sorted(self.scopes),
            "rate_per_s": self.rate_per_s,
            "boundary": self.boundary,
            "active": self.active,
        }
