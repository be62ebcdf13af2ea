"""Per-meter key diversification and the cipher cache (SPEC X3, X7)."""

from __future__ import annotations

import hashlib
import hmac
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kenshin.aroute.frames import Direction
from kenshin.aroute.keys import (
    DEV_MASTER_KEY,
    MASTER_KEY_ENV,
    KeyRing,
    derive_meter_key,
    load_master_key,
)
from kenshin.errors import InvalidSetting

MASTER = bytes(range(32))


def reference_key(master: bytes, device_id: int, direction: Direction) -> bytes:
    message = b"kenshin/aroute/v1/" + bytes([int(direction)]) + device_id.to_bytes(8, "big")
    return hmac.new(master, message, hashlib.sha256).digest()[:16]


@given(
    master=st.binary(min_size=32, max_size=32),
    device_id=st.integers(0, 2**64 - 1),
    direction=st.sampled_from(Direction),
)
def test_derivation_is_the_documented_hmac(
    master: bytes, device_id: int, direction: Direction
) -> None:
    key = derive_meter_key(master, device_id, direction)
    assert len(key) == 16
    assert key == reference_key(master, device_id, direction)
    assert KeyRing(master).key(device_id, direction) == key


def test_keys_differ_by_meter_direction_and_master() -> None:
    keys = {
        derive_meter_key(master, device, direction)
        for master in (MASTER, DEV_MASTER_KEY)
        for device in (1, 2, 2**63)
        for direction in Direction
    }
    assert len(keys) == 2 * 3 * 2


def test_bad_device_ids_and_masters_are_refused() -> None:
    with pytest.raises(InvalidSetting):
        derive_meter_key(MASTER, -1, Direction.UP)
    with pytest.raises(InvalidSetting):
        derive_meter_key(MASTER, 2**64, Direction.UP)
    with pytest.raises(InvalidSetting):
        derive_meter_key(b"short", 1, Direction.UP)
    with pytest.raises(InvalidSetting):
        KeyRing(MASTER, max_cached=0)


def test_load_master_key_from_hex() -> None:
    assert load_master_key(MASTER.hex()) == MASTER
    assert load_master_key("  " + MASTER.hex().upper() + "\n") == MASTER


def test_load_master_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MASTER_KEY_ENV, MASTER.hex())
    assert load_master_key(None) == MASTER


def test_load_master_key_falls_back_to_the_dev_key_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    with caplog.at_level(logging.WARNING, logger="kenshin.aroute"):
        assert load_master_key(None) == DEV_MASTER_KEY
    assert len(DEV_MASTER_KEY) == 32
    assert any("development key" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("text", "message"),
    [("zz" * 32, "not valid hex"), ("ab" * 16, "got 16 bytes"), ("abc", "not valid hex")],
)
def test_load_master_key_rejects_bad_input(text: str, message: str) -> None:
    with pytest.raises(InvalidSetting, match=message):
        load_master_key(text)


def test_bad_environment_key_names_its_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MASTER_KEY_ENV, "00")
    with pytest.raises(InvalidSetting, match=MASTER_KEY_ENV):
        load_master_key(None)


def test_ring_caches_ciphers_per_direction() -> None:
    ring = KeyRing(MASTER)
    up = ring.aead(7, Direction.UP)
    assert ring.aead(7, Direction.UP) is up
    assert ring.aead(7, Direction.DOWN) is not up
    assert ring.misses == 2
    nonce, aad = bytes(12), b"h"
    sealed = up.encrypt(nonce, b"x", aad)
    assert ring.aead(7, Direction.UP).decrypt(nonce, sealed, aad) == b"x"


def test_ring_is_bounded_and_evicts_the_least_recently_used() -> None:
    ring = KeyRing(MASTER, max_cached=2)
    a = ring.aead(1, Direction.UP)
    ring.aead(2, Direction.UP)
    ring.aead(1, Direction.UP)  # 1 is now the most recent
    ring.aead(3, Direction.UP)  # evicts 2
    assert ring.cached(Direction.UP) == 2
    assert ring.aead(1, Direction.UP) is a
    misses = ring.misses
    ring.aead(2, Direction.UP)
    assert ring.misses == misses + 1


def test_bulk_lookup_matches_single_lookups() -> None:
    ring = KeyRing(MASTER, max_cached=3)
    devices = [5, 6, 5, 7, 8, 6]
    bulk = ring.aeads(devices, Direction.UP)
    assert len(bulk) == len(devices)
    nonce = bytes(12)
    for device, cipher in zip(devices, bulk, strict=True):
        expected = KeyRing(MASTER).aead(device, Direction.UP)
        assert cipher.encrypt(nonce, b"v", None) == expected.encrypt(nonce, b"v", None)
    assert ring.cached(Direction.UP) == 3
    ring.clear()
    assert ring.cached(Direction.UP) == 0


def test_a_batch_whose_misses_evict_its_own_hits() -> None:
    """A batch larger than the cache: its misses evict entries it found at the start (a fleet
    of 100,000 meters crashed on this); each cipher is still right and the cache bounded."""
    ring = KeyRing(MASTER, max_cached=3)
    ring.aeads([1, 2], Direction.UP)  # 1 and 2 cached
    devices = [1, 7, 8, 9, 2]  # 1 and 2 hits, evicted by 7, 8, 9 before their turn
    bulk = ring.aeads(devices, Direction.UP)
    nonce = bytes(12)
    for device, cipher in zip(devices, bulk, strict=True):
        expected = KeyRing(MASTER).aead(device, Direction.UP)
        assert cipher.encrypt(nonce, b"v", None) == expected.encrypt(nonce, b"v", None)
    assert ring.cached(Direction.UP) == 3
