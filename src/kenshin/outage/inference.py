"""Which device explains the dark meters (issue 15 item 2; SPEC R1): from what each meter showed
in the last interval — alive, gasped, failed a ping, silent, or nothing expected — infer the
smallest devices of the topology whose loss of power explains the dark set, with a confidence.

One pass, bottom-up, in numpy (``np.bincount`` per level; no loop over meters):

1. **Collectors first.** A collector whose meters are all silent, with no last gasp and no failed
   ping on the feeders they are on, looks like a dead collector, not an outage: its meters become
   unknown. (A real collector failure on a feeder where a customer's drop failed at the same
   time is read as power: the ping after restoration tells.)
2. **Pole transformers.** A transformer is out when none of its meters is alive and at least
   ``min_dark_share`` of those judged are dark or silent (a last gasp or a failed ping counts as
   dark), two of them at least: one last gasp alone is as likely the customer's own drop.
3. **Feeders, then substations.** A feeder is out when every transformer on it is out and none
   of its meters is alive; its transformers' events fold into it. The same for a substation.
4. **Service drops.** A dark meter (gasped or failed a ping) on a transformer with live
   neighbours is a single customer's outage; a meter only silent there is not an outage but a
   candidate to ping (``to_ping``): silence alone is as likely the radio.

Confidence grows with the evidence that says "power" and not "radio": the share of the
device's meters that gasped or failed a ping, plus the share that is merely silent at half
weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from kenshin.grid.topology import Topology

Mask = npt.NDArray[np.bool_]


class Seen(IntEnum):
    """What a meter showed in the interval judged."""

    UNKNOWN = 0  # nothing was expected of it (or its collector is down)
    ALIVE = 1  # a push, an answer, a restore: it has power
    SILENT = 2  # expected, nothing came: power or radio
    GASPED = 3  # a last gasp (POWER_FAIL): power
    NO_ANSWER = 4  # a ping went unanswered through a working collector: power, most likely


@dataclass(frozen=True, slots=True)
class Suspect:
    level: str  # substation, feeder, transformer, service_drop, collector
    device: int
    meters: npt.NDArray[np.int64]  # the meters it darkens
    confidence: float  # 0 … 1


@dataclass(frozen=True, slots=True)
class Inference:
    suspects: list[Suspect]
    to_ping: npt.NDArray[np.int64]  # silent meters a ping would tell apart (no device claims them)


def infer(
    seen: npt.NDArray[np.int8],
    topology: Topology,
    collector_of: npt.NDArray[np.int64],
    *,
    min_dark_share: float = 0.8,
    require_proof: bool = False,
) -> Inference:
    """The devices that explain the dark meters of ``seen`` (a :class:`Seen` per meter).
    ``require_proof`` (storm mode): a device is out only with a last gasp or a failed ping
    among its meters; silence alone accuses nothing."""
    seen = np.asarray(seen, dtype=np.int8).copy()
    suspects: list[Suspect] = []

    # 1. a dead collector: every meter behind it silent, and no evidence of power loss on the
    # feeders they are on (a gasp or a failed ping there says power, whatever the collector)
    collectors = int(collector_of.max(initial=-1)) + 1
    behind = np.bincount(collector_of, minlength=collectors)
    silent_behind = np.bincount(collector_of, seen == Seen.SILENT, minlength=collectors)
    evidence = (seen == Seen.GASPED) | (seen == Seen.NO_ANSWER)
    feeder = topology.feeder.astype(np.int64)
    feeder_evidence = np.bincount(feeder, evidence, minlength=topology.n_feeders) > 0
    powered_doubt = np.bincount(collector_of, feeder_evidence[feeder], minlength=collectors)
    dead = (behind >= 2) & (silent_behind == behind) & (powered_doubt == 0)
    for c in np.flatnonzero(dead):
        members = np.flatnonzero(collector_of == c)
        suspects.append(Suspect("collector", int(c), members, 1.0 - 1.0 / len(members)))
    seen[dead[collector_of]] = Seen.UNKNOWN

    alive = seen == Seen.ALIVE
    proof = (seen == Seen.GASPED) | (seen == Seen.NO_ANSWER)
    dark = proof | (seen == Seen.SILENT)
    judged = seen != Seen.UNKNOWN

    def level_out(
        group: npt.NDArray[np.int64], size: int
    ) -> tuple[Mask, npt.NDArray[np.float64], Mask]:
        """Per group: dark enough to be out? its confidence, and whether it holds proof."""
        ok = group >= 0
        g = group[ok]
        members = np.bincount(g, minlength=size).astype(np.float64)
        n_judged = np.bincount(g, judged[ok], minlength=size)
        n_alive = np.bincount(g, alive[ok], minlength=size)
        n_dark = np.bincount(g, dark[ok], minlength=size)
        n_proof = np.bincount(g, proof[ok], minlength=size)
        share = np.divide(n_dark, n_judged, out=np.zeros(size), where=n_judged > 0)
        out = (n_alive == 0) & (n_dark > 0) & (share >= min_dark_share)
        # two dark meters at least: one gasp alone is as likely its own service drop
        out &= (n_dark >= 2) | (members == 1)
        # over the meters judged: those not heard from yet neither add nor take away
        confidence = np.divide(
            n_proof + 0.5 * (n_dark - n_proof), n_judged, out=np.zeros(size), where=n_judged > 0
        )
        return out, np.clip(confidence, 0.0, 1.0), n_proof > 0

    # 2. pole transformers
    tx_dark, tx_conf, tx_proof = level_out(
        topology.transformer.astype(np.int64), topology.n_transformers
    )
    # 3. feeders: every transformer dark (and no live HV customer on it), then substations
    n_feeders = topology.n_feeders
    fd_dark, fd_conf, fd_proof = level_out(topology.feeder.astype(np.int64), n_feeders)
    tx_per_feeder = np.bincount(topology.transformer_feeder, minlength=n_feeders)
    # a transformer stands in the way of its feeder only with a live meter (one whose meters
    # are partly unknown, partly silent is not evidence of power); the feeder itself must be
    # judged for at least half its customers, so a fleet just started accuses nothing
    lv = topology.transformer >= 0
    tx_alive = np.bincount(topology.transformer[lv], alive[lv], minlength=topology.n_transformers)
    tx_quiet_per_feeder = np.bincount(
        topology.transformer_feeder, tx_alive == 0, minlength=n_feeders
    )
    fd_members = np.bincount(feeder, minlength=n_feeders)
    fd_judged = np.bincount(feeder, judged, minlength=n_feeders)
    fd_dark &= (tx_quiet_per_feeder == tx_per_feeder) & (2 * fd_judged >= fd_members)
    # the smallest device that explains the set: a feeder with one transformer and no HV
    # customer is that transformer, a substation with one feeder that feeder
    hv_per_feeder = np.bincount(feeder[topology.transformer < 0], minlength=n_feeders)
    fd_dark &= (tx_per_feeder + hv_per_feeder) > 1
    n_subs = int(topology.feeder_substation.max(initial=-1)) + 1
    sb_dark, sb_conf, sb_proof = level_out(topology.substation.astype(np.int64), n_subs)
    fd_per_sub = np.bincount(topology.feeder_substation, minlength=n_subs)
    fd_dark_per_sub = np.bincount(topology.feeder_substation, fd_dark, minlength=n_subs)
    sb_dark &= (fd_dark_per_sub == fd_per_sub) & (fd_per_sub > 1)
    # in a storm only proof accuses: a device is reported only with a gasp or failed ping in it
    tx_out = tx_dark & tx_proof if require_proof else tx_dark
    fd_out = fd_dark & fd_proof if require_proof else fd_dark
    sb_out = sb_dark & sb_proof if require_proof else sb_dark

    claimed = np.zeros(len(seen), dtype=bool)
    for level, group, out, conf in (
        ("substation", topology.substation, sb_out, sb_conf),
        ("feeder", topology.feeder, fd_out, fd_conf),
        ("transformer", topology.transformer, tx_out, tx_conf),
    ):
        group = group.astype(np.int64)
        chosen = np.flatnonzero((group >= 0) & out[np.maximum(group, 0)] & ~claimed)
        if not len(chosen):
            continue
        claimed[chosen] = True
        # the members of every device at once: one sort, then one slice per device
        order = chosen[np.argsort(group[chosen], kind="stable")]
        devices, starts = np.unique(group[order], return_index=True)
        for device, members in zip(devices, np.split(order, starts[1:]), strict=True):
            suspects.append(Suspect(level, int(device), members, float(conf[device])))

    # 4. single customers: evidence of power loss; sure when a neighbour is alive, else as
    # likely the first sign of their transformer
    tx = topology.transformer.astype(np.int64)
    alive_on_tx = np.bincount(tx[(tx >= 0) & alive], minlength=topology.n_transformers)
    for meter in np.flatnonzero(proof & ~claimed):
        sure = tx[meter] >= 0 and alive_on_tx[tx[meter]] > 0
        suspects.append(
            Suspect("service_drop", int(meter), np.array([meter]), 0.9 if sure else 0.5)
        )
    to_ping = np.flatnonzero((seen == Seen.SILENT) & ~claimed)
    return Inference(suspects, to_ping.astype(np.int64))
