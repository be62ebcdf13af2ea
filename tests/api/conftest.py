"""The API tests' shared world: a small wire-mode system with a principal of every staff role,
every party type, and their tokens (``test_access.py``, ``test_owasp.py``)."""

from __future__ import annotations

import datetime as dt
import threading
import warnings

import pytest

from kenshin.api import create_app
from kenshin.app.system import EmbeddedSystem, build_system
from kenshin.core.timeslots import JST
from kenshin.fleet.simulator import FleetConfig
from kenshin.security.principals import Kind, Party, Role
from tests.api.auth import register, token_for

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

START = dt.datetime(2026, 6, 1, tzinfo=JST)


class World:
    def __init__(self, system: EmbeddedSystem, client: TestClient) -> None:
        self.system = system
        self.client = client
        spids = [str(s) for s in system.fleet.population.supply_point_id]
        self.own, self.other = spids[:2], spids[2:4]
        self.tokens: dict[str, str] = {}

    def token(self, name: str) -> str:
        return self.tokens[name]


@pytest.fixture(scope="module")
def world() -> World:
    system = build_system(
        FleetConfig(n_meters=40, start=START, seed=5), aroute="wire", background_writer=False
    )
    system.run(START + dt.timedelta(hours=2))
    system.mdms.flush()
    app = create_app(
        system.store,
        hes=system.hes,
        hes_lock=threading.Lock(),
        control=system.control,
        campaigns=system.campaigns,
    )
    client = TestClient(app, raise_server_exceptions=False)
    w = World(system, client)
    for role in Role:
        name = f"staff-{role.value.replace('_', '-')}"
        w.tokens[name] = token_for(client, name, register(client, name, roles=[role]))
    for party in Party:
        kind = Kind.DEVICE if party.value.endswith(("device", "server")) else Kind.ORGANISATION
        name = f"party-{party.value.replace('_', '-')}"
        secret = register(client, name, kind, party=party, supply_points=w.own)
        w.tokens[name] = token_for(client, name, secret)
    register(client, "target", roles=[Role.VIEWER])  # what admins disconnect and reissue
    return w
