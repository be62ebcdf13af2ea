"""What simulated meters keep between runs of ``kenshin fleet``, as real meters keep it in
non-volatile memory: their uplink frame counters, and where simulated time stopped.

A real meter's frame counter only ever rises (SPEC X4: the head-end refuses a counter it has
seen). A fleet that started again from counter 1 had every frame refused as a replay by a
head-end that had taken the first run, so ``kenshin fleet`` worked once per install. With a
state file the next run resumes: the meters are brought to where the last run stopped (their
registers and recorders simulated without sending, the same values as one long run), their
counters continue, and the run goes on from there.

The state is written before the frames of each 5-minute step leave (write-ahead, atomically:
a temporary file renamed over the old one), so after a crash the counters on file are at least
those of every frame that left: the next run never reuses one. The step in flight when the
process died may be lost in part; the head-end re-reads those values from the meters' memory,
as it does after a collector outage.
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kenshin.errors import InvalidSetting, KenshinError
from kenshin.secrecy import private_umask

FORMAT = 1
# the commanded settings a state keeps, by array name (kenshin.app.services.save_fleet_state)
METER_SETTINGS = (
    "switch_state",
    "ampere_limit_a",
    "profile_limit_a",
    "profile_start_us",
    "profile_end_us",
    "next_limit_a",
    "next_start_us",
    "next_end_us",
    "soft_switch_15",
    "realtime",
)
LEGACY_SETTINGS = ("switch_closed",)  # read from states written before issue 16


@dataclass
class FleetState:
    """The fleet it belongs to (``FleetConfig.describe()``), the simulated time reached (epoch
    µs: the next run starts there) and each meter's last uplink frame counter."""

    fleet: str
    until_us: int
    up_counter: npt.NDArray[np.int64]
    # what commands changed, kept as a meter keeps its settings: the switch, the ampere limit,
    # the A5 soft switch and A3 real-time sending (None in a state written before they were)
    settings_of_meters: dict[str, npt.NDArray[np.generic]] | None = None

    @property
    def settings(self) -> dict[str, object]:
        """The fleet's settings (``FleetConfig.describe``), parsed."""
        return dict(json.loads(self.fleet))

    @classmethod
    def load(cls, path: Path) -> FleetState | None:
        """The state on file, None when there is none; a file that is not one is an error."""
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                counters = np.asarray(data["up_counter"], dtype=np.int64)
                names = (*METER_SETTINGS, *LEGACY_SETTINGS)
                kept = {n: np.asarray(data[n]) for n in names if n in data.files}
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT}")
            return cls(str(meta["fleet"]), int(meta["until_us"]), counters, kept or None)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise InvalidSetting(
                f"{path} is not a kenshin fleet state ({exc}); remove it to start over"
            ) from exc

    def save(self, path: Path) -> None:
        """Write the state atomically (0600: it says where the meters' counters stand)."""
        meta = json.dumps({"format": FORMAT, "fleet": self.fleet, "until_us": self.until_us})
        temporary = path.with_name(f".{path.name}.tmp")
        try:
            with private_umask():
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(temporary, "wb") as out:
                    arrays: dict[str, Any] = {"meta": np.array(meta), "up_counter": self.up_counter}
                    arrays.update(self.settings_of_meters or {})
                    np.savez(out, **arrays)
            os.replace(temporary, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise KenshinError(f"cannot write the fleet state {path}: {exc}") from exc
