"""The business system's control key (issue 16 item 2): kept in a 0600 PEM file with its public
half beside it, nonces that only rise, signatures the meter's check accepts only for what was
signed, and switching commands that survive the A-route codec with their signature."""

from __future__ import annotations

import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kenshin.aroute.authorization import refusal
from kenshin.aroute.codec.layout import pack_body, unpack_body
from kenshin.aroute.frames import Command, CommandKind, FrameType
from kenshin.control.signing import (
    CONTROL_KEY_FILE,
    ControlSigner,
    load_public_key,
    public_key_path,
)
from kenshin.errors import InvalidSetting

NOW = 1_780_000_000_000_000
DEVICE = 301_000_000_000_148


def test_the_key_file_is_private_kept_and_its_public_half_beside_it(tmp_path) -> None:
    path = tmp_path / CONTROL_KEY_FILE
    first = ControlSigner.from_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = ControlSigner.from_file(path)  # the same key on the next start
    public = load_public_key(public_key_path(path))
    a = again.authorize(DEVICE, CommandKind.SWITCH_OPEN, (), NOW)
    for key in (first.public_key, public):
        assert refusal(key, DEVICE, CommandKind.SWITCH_OPEN, (0, 0, 0), a, NOW, 0) is None


def test_a_file_that_is_not_a_key_is_one_clear_error(tmp_path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    with pytest.raises(InvalidSetting, match="is not a control key") as err:
        ControlSigner.from_file(bad)
    assert "\n" not in str(err.value)
    with pytest.raises(InvalidSetting, match="no control public key"):
        load_public_key(tmp_path / "missing.pub")


def test_nonces_only_rise_even_when_the_clock_does_not() -> None:
    signer = ControlSigner.generate()
    nonces = [signer.authorize(DEVICE, CommandKind.SWITCH_OPEN, (), NOW).nonce for _ in range(5)]
    assert nonces == sorted(set(nonces)) and nonces[0] == NOW
    assert signer.authorize(DEVICE, CommandKind.SWITCH_OPEN, (), NOW - 10).nonce > nonces[-1]


@given(
    kind=st.sampled_from(sorted(CommandKind)),
    limit=st.integers(0, 2**32 - 1),
    command_id=st.integers(0, 2**32 - 1),
)
def test_a_signed_command_survives_the_codec(
    kind: CommandKind, limit: int, command_id: int
) -> None:
    signer = SIGNER
    authorization = signer.authorize(DEVICE, kind, (limit,), NOW)
    command = Command(command_id, kind, limit, 0, 0, authorization)
    body = pack_body(FrameType.COMMAND, command)
    assert unpack_body(FrameType.COMMAND, body) == command
    assert unpack_body(FrameType.COMMAND, body[:17]) == Command(command_id, kind, limit)
    decoded = unpack_body(FrameType.COMMAND, body)
    assert isinstance(decoded, Command)
    args = (decoded.arg1, decoded.arg2, decoded.arg3)
    assert refusal(signer.public_key, DEVICE, kind, args, decoded.authorization, NOW, 0) is None


SIGNER = ControlSigner.generate()


def test_a_truncated_signature_is_a_malformed_frame() -> None:
    from kenshin.aroute.codec.layout import BadPayload

    a = SIGNER.authorize(DEVICE, CommandKind.SWITCH_OPEN, (), NOW)
    body = pack_body(FrameType.COMMAND, Command(1, CommandKind.SWITCH_OPEN, 0, 0, 0, a))
    for cut in (18, 40, len(body) - 1):
        with pytest.raises(BadPayload):
            unpack_body(FrameType.COMMAND, body[:cut])
