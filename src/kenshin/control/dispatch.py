"""Sending what passed the switching gate (issue 16; SPEC X2): one command per meter, each
signed by the business system for its own meter, queued in the head-end's command book."""

from __future__ import annotations

from kenshin.control.gate import ControlRequest
from kenshin.control.signing import ControlSigner
from kenshin.hes.commands import CommandRecord
from kenshin.hes.service import HeadEnd


def issue(
    hes: HeadEnd,
    signer: ControlSigner,
    request: ControlRequest,
    now_us: int,
    idempotency_key: str | None = None,
) -> list[CommandRecord]:
    """Sign and queue a request that passed the gate: one command per meter, each signed for
    its own meter."""
    devices = hes.registry.device_ids_of(request.meter_keys).tolist()
    by = request.actor if request.decided_by is None else f"{request.actor}+{request.decided_by}"
    return [
        hes.commands.request(
            int(key),
            request.kind,
            request.args,
            now_us,
            requested_by=by,
            idempotency_key=idempotency_key,
            authorization=signer.authorize(int(device), request.kind, request.args, now_us),
        )
        for key, device in zip(request.meter_keys.tolist(), devices, strict=True)
    ]


__all__ = ["issue"]
