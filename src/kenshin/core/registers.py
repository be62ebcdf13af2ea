"""Energy registers: 8 effective digits, a unit and a coefficient, and rollover (SPEC M5).

A register holds an integer count. The energy it stands for is
``count × 10**unit_exponent × coefficient`` [kWh]: the unit is the ECHONET Lite style power of ten
(0xE1: 0.01 kWh → ``unit_exponent=-2``) and the coefficient is the meter's multiplier (0xD3, e.g.
an instrument transformer ratio on HV meters). After ``10**digits - 1`` the register rolls over to
0, so the difference of two reads is taken modulo ``10**digits``: a rollover is a small positive
step, never a huge negative one. That holds end to end (meter, HES, MDMS, settlement).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

REGISTER_DIGITS = 8

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class RegisterSpec:
    """How a meter's energy register counts."""

    unit_exponent: int = -2  # one count is 10**unit_exponent kWh before the coefficient
    coefficient: int = 1
    digits: int = REGISTER_DIGITS

    def __post_init__(self) -> None:
        if not -4 <= self.unit_exponent <= 4:
            raise ValueError(f"unit exponent must be within -4..4, got {self.unit_exponent}")
        if self.coefficient < 1:
            raise ValueError(f"coefficient must be ≥ 1, got {self.coefficient}")
        if not 1 <= self.digits <= 9:
            raise ValueError(f"register digits must be 1–9, got {self.digits}")

    @property
    def modulus(self) -> int:
        """The count after which the register rolls over to 0."""
        return int(10**self.digits)

    @property
    def kwh_per_count(self) -> float:
        """Energy of one count including the coefficient [kWh]."""
        return float(10.0**self.unit_exponent) * self.coefficient

    @property
    def wh_per_count(self) -> float:
        return self.kwh_per_count * 1000.0

    def wrap(self, count: IntArray) -> IntArray:
        """An unbounded count as the register shows it (rolled over)."""
        return np.asarray(count, dtype=np.int64) % self.modulus

    def difference(self, earlier: IntArray | int, later: IntArray | int) -> IntArray:
        """Counts advanced from ``earlier`` to ``later``, rollover-safe [counts].

        Valid as long as less than one full turn of the register lies between the two reads.
        """
        return (np.asarray(later, dtype=np.int64) - np.asarray(earlier, dtype=np.int64)) % (
            self.modulus
        )

    def to_kwh(self, counts: IntArray | int) -> npt.NDArray[np.float64]:
        """Counts → energy [kWh]."""
        return np.asarray(counts, dtype=np.float64) * self.kwh_per_count


def difference(earlier: IntArray, later: IntArray, digits: int = REGISTER_DIGITS) -> IntArray:
    """Rollover-safe register difference for arrays of reads [counts]."""
    return RegisterSpec(digits=digits).difference(earlier, later)
