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
from kenshin.errors import Forbidden

TEN_MINUTES_US = 600_000_000
CEILING_KW = 70_000.0  # SPEC X1: 70 MW for ten minutes


class X1Ceiling:
    def __init__(
        self,
        meters: pa.Table,
        control_key: Ed25519PublicKey | None = None,
        ceiling_kw: float = CEILING_KW,
    ) -> None:
        keys = meters.column("meter_key").to_numpy().astype(np.int64)
        amperes = meters.column("contract_a").to_numpy().astype(np.float64)
        kw = meters.column("contract_kw").to_numpy(zero_copy_only=False).astype(np.float64)
        self.contract_kw: npt.NDArray[np.float64] = np.zeros(int(keys.max(initial=-1)) + 1)
        self.contract_kw[keys] = np.where(amperes > 0, amperes * 0.1, np.nan_to_num(kw))
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

    def at_risk_kw(self, kind: CommandKind, meter_key: int, args: tuple[int, int, int]) -> float:
        contract = float(self.contract_kw[meter_key]) if meter_key < len(self.contract_kw) else 0.0
        if kind is CommandKind.SWITCH_OPEN:
            return contract
        if kind is CommandKind.SET_AMPERE_LIMIT:
            return max(0.0, contract - args[0] * 0.1)
        return 0.0

    def refusal(
        self, kind: CommandKind, meter_key: int, args: tuple[int, int, int], now_us: int
    ) -> str | None:
        """Why this command would pass the ceiling (None: carry it, and count it)."""
        risk = self.at_risk_kw(kind, meter_key, args)
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
