"""The head-end's own X1 ceiling (issue 16 item 2; SPEC X1): whatever the business side
planned or released, the head-end carries no switching commands whose load at risk would pass
70,000 kW in ten minutes, unless an emergency declaration signed with the business system's
control key is in force. Defense in depth: a planner gone wrong is stopped where the commands
leave.

At risk, as the switching gate counts it (``kenshin.control.gate``): a disconnect the meter's
whole contract, a limit what lies above it, a reconnect nothing.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kenshin.aroute.authorization import EmergencyDeclaration, emergency_refusal
from kenshin.aroute.frames import CommandKind
from kenshin.core.household_response import VOLTS, contract_kw_by_key
from kenshin.errors import Forbidden


def at_risk_kw(
    kind: CommandKind, contract_kw: npt.NDArray[np.float64], args: tuple[int, ...]
) -> npt.NDArray[np.float64]:
    """The load each meter's command could interrupt [kW]: a disconnect its whole contract, a
    limit what lies above it, anything else nothing (the switching gate counts the same)."""
    if kind is CommandKind.SWITCH_OPEN:
        return contract_kw
    if kind is CommandKind.SET_AMPERE_LIMIT:
        return np.maximum(contract_kw - (args[0] if args else 0) * VOLTS / 1000, 0.0)
    return np.zeros_like(contract_kw)


TEN_MINUTES_US = 600_000_000
CEILING_KW = 70_000.0  # SPEC X1: 70 MW for ten minutes


class X1Ceiling:
    def __init__(
        self,
        meters: pa.Table,
        control_key: Ed25519PublicKey | None = None,
        ceiling_kw: float = CEILING_KW,
    ) -> None:
        self.contract_kw = contract_kw_by_key(meters)
        self.control_key = control_key
        self.ceiling_kw = ceiling_kw
        self._carried: deque[tuple[int, float]] = deque()  # (when, kW at risk)
        self.declarations: list[EmergencyDeclaration] = []

    def declare(self, declaration: EmergencyDeclaration) -> None:
        """An emergency the business system declared (two approvers) and signed."""
        why = emergency_refusal(self.control_key, declaration)
        if why is not None:
            raise Forbidden(f"emergency declaration refused: {why}")
        self.declarations.append(declaration)

    def refusal(
        self, kind: CommandKind, meter_key: int, args: tuple[int, int, int], now_us: int
    ) -> str | None:
        """Why this command would pass the ceiling (None: carry it, and count it)."""
        contract = self.contract_kw[meter_key : meter_key + 1]
        risk = float(at_risk_kw(kind, contract, args).sum())
        if risk <= 0:
            return None
        while self._carried and self._carried[0][0] <= now_us - TEN_MINUTES_US:
            self._carried.popleft()
        if any(d.start_us <= now_us < d.end_us for d in self.declarations):
            self._carried.append((now_us, risk))
            return None
        recent = sum(kw for _, kw in self._carried)
        if recent + risk > self.ceiling_kw:
            return (
                f"X1: {recent + risk:,.0f} kW at risk in 10 min would pass the head-end's "
                f"ceiling of {self.ceiling_kw:,.0f} kW (no emergency declared)"
            )
        self._carried.append((now_us, risk))
        return None
