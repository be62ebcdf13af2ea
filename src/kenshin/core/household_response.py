"""How households live with an ampere limit below their contract (issue 16): the stated
assumptions the simulated meters act on (``kenshin.fleet.limiter``) and the campaign planner
expects (``kenshin.control.planner``). Sources and calibration: docs/control.md."""

from __future__ import annotations

VOLTS = 100.0  # an ampere contract is A × 100 V (a 30 A contract is 3 kVA)
SAFE_MARGIN = 1.3  # a household used to its cap keeps its mean this far under it
ESSENTIAL_SHARE = 0.35  # of the household's usual demand, never shed
ESSENTIAL_MIN_W = 150.0
ESSENTIAL_PEAK = 1.2  # fridge compressors starting: the essential load's peak / its mean
