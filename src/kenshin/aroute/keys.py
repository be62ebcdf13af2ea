"""Per-meter A-route keys, diversified from one utility master key.

Every meter has its own AES-128 key per direction (uplink, downlink). Nobody stores a million
keys: each is *diversified* from the utility's master key, the way HSM-based metering and
payment systems derive card or meter keys from a master key and the device's identity::

    key(meter, direction) =
        HMAC-SHA256(master, b"kenshin/aroute/v1/" ‖ direction u8 ‖ device_id u64)[:16]

(``direction`` 0 = uplink, 1 = downlink; ``device_id`` big-endian.) The meter is provisioned with
its two keys at manufacture; the head-end recomputes them from the master key, which in
production lives in an HSM and never leaves it. One meter's extracted key reveals nothing about
the master key or any other meter's keys (SPEC X3, X7).

Constructing an :class:`~cryptography.hazmat.primitives.ciphers.aead.AESGCM` costs about as much
as one decryption, so :class:`KeyRing` caches them. The cache is bounded: each cached cipher holds
about 2.5 KB of OpenSSL state, so a million meters cannot all stay cached on a small machine; a
miss costs one HMAC and one construction (a few µs).
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections import OrderedDict

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kenshin.aroute.frames import Direction
from kenshin.errors import InvalidSetting
from kenshin.secrecy import is_private

log = logging.getLogger("kenshin.aroute")

MASTER_KEY_ENV = "KENSHIN_AROUTE_MASTER_KEY"
MASTER_KEY_BYTES = 32
METER_KEY_BYTES = 16
KDF_LABEL = b"kenshin/aroute/v1/"

# Fixed, public and therefore worthless as a secret: for simulations and tests only.
DEV_MASTER_KEY = b"kenshin-aroute-dev-key-PUBLIC!!!"

DEFAULT_MAX_CACHED = 1 << 15  # ≈ 80 MB of cipher state at most


def load_master_key(
    hex_or_none: str | None = None, *, path: str | os.PathLike[str] | None = None
) -> bytes:
    """The master key from a hex string, else the key file ``path``, else
    ``$KENSHIN_AROUTE_MASTER_KEY``, else the dev key (a hex string and a file together are
    refused).

    Falling back to :data:`DEV_MASTER_KEY` logs a warning: anyone can forge frames under it.
    """
    if hex_or_none is not None and path is not None:
        raise InvalidSetting("A-route master key given twice (a key and a key file): give one")
    if path is not None:
        return read_master_key_file(path)
    source = "argument"
    if hex_or_none is None:
        hex_or_none = os.environ.get(MASTER_KEY_ENV) or None
        source = MASTER_KEY_ENV
    if hex_or_none is None:
        log.warning(
            "no A-route master key given (argument or %s): using the public development key; "
            "frames are NOT protected",
            MASTER_KEY_ENV,
        )
        return DEV_MASTER_KEY
    return parse_master_key(hex_or_none, source)


def parse_master_key(text: str, source: str) -> bytes:
    """The 32-byte key written as 64 hex digits (surrounding white space ignored); ``source``
    names where it came from in the error (never the text itself: X3)."""
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise InvalidSetting(
            f"A-route master key ({source}) must be {MASTER_KEY_BYTES * 2} hex digits; "
            "it is not valid hex"
        ) from None
    if len(key) != MASTER_KEY_BYTES:
        raise InvalidSetting(
            f"A-route master key ({source}) must be {MASTER_KEY_BYTES} bytes "
            f"({MASTER_KEY_BYTES * 2} hex digits), got {len(key)} bytes"
        )
    return key


def read_master_key_file(path: str | os.PathLike[str]) -> bytes:
    """The master key in the file ``path`` (64 hex digits), which must give group and others
    no permission (``chmod 600``), as ssh demands of a private key (SPEC X3)."""
    try:
        # non-blocking: a FIFO in the key file's place is refused below, not waited on
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise InvalidSetting(f"A-route master key file {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)  # the file opened, not whatever the name points to by now
        if not stat.S_ISREG(st.st_mode):
            raise InvalidSetting(f"A-route master key file {path} is not a regular file")
        if not is_private(st.st_mode):
            raise InvalidSetting(
                f"A-route master key file {path} is open to group or others "
                f"(mode {stat.S_IMODE(st.st_mode):04o}): run chmod 600 {path}"
            )
        raw = os.read(fd, 4096)  # a key file is 64 hex digits and a newline
    finally:
        os.close(fd)
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        text = "not hex"  # the same one-line error as any other text that is not hex
    return parse_master_key(text, f"file {path}")


def _check_master(master: bytes) -> bytes:
    if len(master) != MASTER_KEY_BYTES:
        raise InvalidSetting(f"master key must be {MASTER_KEY_BYTES} bytes, got {len(master)}")
    return bytes(master)


def _check_device_id(device_id: int) -> int:
    device_id = int(device_id)
    if not 0 <= device_id < 1 << 64:
        raise InvalidSetting(f"device id must fit in an unsigned 64-bit integer, got {device_id}")
    return device_id


def derive_meter_key(master: bytes, device_id: int, direction: Direction) -> bytes:
    """The 16-byte AES key of one meter and direction (see the module docstring)."""
    return _Deriver(_check_master(master)).derive(_check_device_id(device_id), direction)


class _Deriver:
    """HMAC-SHA256 with the pads of the master key hashed once (half the cost of ``hmac``)."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, master: bytes) -> None:
        block = master.ljust(64, b"\0")  # master keys are 32 bytes < the 64-byte block
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def derive(self, device_id: int, direction: Direction) -> bytes:
        inner = self._inner.copy()
        inner.update(KDF_LABEL + bytes((int(direction),)) + device_id.to_bytes(8, "big"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:METER_KEY_BYTES]


class KeyRing:
    """AES-GCM ciphers of every meter, derived on demand and cached (least recently used out).

    ``max_cached`` bounds the cache per direction (about 2.5 KB per entry). Not thread-safe:
    give each thread its own ring.
    """

    def __init__(self, master: bytes, max_cached: int = DEFAULT_MAX_CACHED) -> None:
        if max_cached < 1:
            raise InvalidSetting(f"key cache size must be ≥ 1, got {max_cached}")
        self._deriver = _Deriver(_check_master(master))
        self.max_cached = max_cached
        self._cache: tuple[OrderedDict[int, AESGCM], OrderedDict[int, AESGCM]] = (
            OrderedDict(),
            OrderedDict(),
        )
        self.misses = 0

    def key(self, device_id: int, direction: Direction) -> bytes:
        """The raw 16-byte key (for provisioning a simulated meter); not cached."""
        return self._deriver.derive(_check_device_id(device_id), direction)

    def aead(self, device_id: int, direction: Direction) -> AESGCM:
        """The cipher of one meter and direction."""
        cache = self._cache[direction]
        cipher = cache.get(device_id)
        if cipher is not None:
            cache.move_to_end(device_id)
            return cipher
        return self._miss(cache, device_id, direction)

    def aeads(self, device_ids: list[int], direction: Direction) -> list[AESGCM]:
        """The ciphers of many meters at once (a batch's worth; cheaper than one call each)."""
        cache = self._cache[direction]
        get = cache.get
        out = [get(d) for d in device_ids]
        move = cache.move_to_end
        for i, cipher in enumerate(out):
            if cipher is None:
                out[i] = self._miss(cache, device_ids[i], direction)
            elif device_ids[i] in cache:
                move(device_ids[i])
            else:  # a hit, evicted since by this batch's own misses: kept again
                if len(cache) >= self.max_cached:
                    cache.popitem(last=False)
                cache[device_ids[i]] = cipher
        return out  # type: ignore[return-value]  # no None is left

    def _miss(
        self, cache: OrderedDict[int, AESGCM], device_id: int, direction: Direction
    ) -> AESGCM:
        device_id = _check_device_id(device_id)
        cipher = AESGCM(self._deriver.derive(device_id, direction))
        self.misses += 1
        if len(cache) >= self.max_cached:
            cache.popitem(last=False)
        cache[device_id] = cipher
        return cipher

    def cached(self, direction: Direction) -> int:
        return len(self._cache[direction])

    def clear(self) -> None:
        for cache in self._cache:
            cache.clear()
