"""The servers the service mode runs on are there when CI says they must be (.ci/run)."""

import socket

import pytest

from tests.conftest import require_service


@pytest.mark.parametrize("name", ["postgresql", "mosquitto"])
def test_service_accepts_connections(name):
    host, port = require_service(name)
    with socket.create_connection((host, port), timeout=2) as conn:
        assert conn.getpeername()[1] == port


def test_mosquitto_speaks_mqtt():
    host, port = require_service("mosquitto")
    # MQTT 3.1.1 CONNECT with a clean session and client id "kenshin-ci"; expect CONNACK 0x20
    client_id = b"kenshin-ci"
    variable = b"\x00\x04MQTT\x04\x02\x00\x3c"
    payload = len(client_id).to_bytes(2, "big") + client_id
    body = variable + payload
    with socket.create_connection((host, port), timeout=2) as conn:
        conn.sendall(bytes([0x10, len(body)]) + body)
        reply = conn.recv(4)
    assert reply[:2] == b"\x20\x02"
    assert reply[3] == 0  # connection accepted


def test_postgresql_speaks_its_protocol():
    host, port = require_service("postgresql")
    # SSLRequest: length 8, code 80877103; a PostgreSQL server answers b"S" or b"N"
    with socket.create_connection((host, port), timeout=2) as conn:
        conn.sendall((8).to_bytes(4, "big") + (80877103).to_bytes(4, "big"))
        assert conn.recv(1) in (b"S", b"N")
