"""Supply voltage at every low-voltage meter from the fleet's net power (vectorized).

Per unit of the 100 V (or 200 V) nominal, from the substation down to the meter::

    substation bus ── 6.6 kV feeder ──► pole transformer (tap) ── LV line ──► service drop ──► meter
    v_send(P_f)       − d_f · P_f · s(x)   × 1.05 / tap − z_t · P_t    − z_lv · P_t    − z_sd · P_i

- ``v_send`` rises with the feeder's forward load (line-drop compensation at the substation).
- The feeder drop grows along the feeder as ``s(x) = 2x − x²`` for load spread evenly along it
  (x = ``transformer_position``), in proportion to the feeder's net load ``P_f`` (np.bincount).
- Each pole transformer's tap (6750/6600/6450/6300/6150 V) was set for the voltage expected at
  its place at a moderate load, so the far end of a feeder has a high tap; at light load with
  strong PV there the voltage overshoots — the over-voltage the brief asks for.
- The transformer and LV-line drop follows the transformer's net load ``P_t``, the service drop
  the meter's own; negative (reverse) flow raises the voltage.

HV and EHV meters report 0. EHV plants hang off the feeder array in the topology but are fed from
a higher voltage in reality, so they are left out of feeder sums.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from kenshin.core.customers import CustomerType
from kenshin.core.meterspec import MeterClass
from kenshin.fleet.population import Population

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

TAG_VOLTAGE = 0x7017

SEND_NO_LOAD_PU = 1.005  # substation sending voltage at no load [pu of 6.6 kV]
SEND_LDC_PU = 0.03  # sending voltage raise at the feeder's design load [pu]
FEEDER_DROP_PU = 0.06  # drop at the feeder end at design load [pu]
SECONDARY_RATED_PU = 1.05  # a pole transformer gives 105 V when the primary equals its tap
TAPS_PU = np.array([6750.0, 6600.0, 6450.0, 6300.0, 6150.0]) / 6600.0
# Taps are chosen so the secondary sits at this voltage halfway between light and design load,
# counting the typical LV drop at each, so both ends stay within 101 ± 6 V.
TAP_TARGET_PU = 1.025
LIGHT_LOAD = 0.15  # night / spring midday feeder load [share of design]
TAP_ERROR_SHARE = 0.05  # transformers whose tap is one step off the ideal
TYPICAL_LV_DROP_PU = (0.003, 0.02)  # transformer + LV line + service drop at light / design load
TRANSFORMER_DROP_PU = 0.02  # at rated kVA
TRANSFORMER_SIZING = 1.5  # rated kVA at least this many times the design load [kVA/kW]
LV_LINE_DROP_PU = 0.05  # at rated kVA, for the customer at the end of the LV line
SERVICE_DROP_PU = 0.015  # at the contract's power
OFFSET_SD_PU = 0.005  # static differences: phase imbalance, line lengths not modelled
NOISE_SD_PU = 0.0015  # measurement noise

NOMINAL_DV = {  # 0.1 V units
    MeterClass.LV_1P2W: 1000,
    MeterClass.LV_1P3W: 1000,  # phase voltage of the 100/200 V supply
    MeterClass.LV_3P3W: 2000,
}


def design_load_w(population: Population) -> F64:
    """A customer's share of the coincident peak a feeder is designed for [W] (EHV: 0)."""
    ctype = population.customer_type
    contract_a = population.contract_a.astype(np.float64)
    contract_w = population.contract_kw.astype(np.float64) * 1e3
    household_w = np.where(contract_a > 0, contract_a * 100.0 * 0.25, 1000.0)
    return np.select(
        [
            np.isin(ctype, [CustomerType.HOUSEHOLD_DETACHED, CustomerType.HOUSEHOLD_APARTMENT]),
            ctype == CustomerType.SHOP_OFFICE,
            ctype == CustomerType.EHV_FACTORY,
        ],
        [household_w, contract_a * 100.0 * 0.4, 0.0],
        contract_w * 0.6,
    )


def feeder_drop_shape(position: F64) -> F64:
    """Share of the feeder-end drop seen at ``position`` (0 at the substation, 1 at the end)."""
    return np.asarray(2.0 * position - position**2)


class VoltageModel:
    """Per-meter and per-transformer constants drawn once; :meth:`step` is a few array ops."""

    def __init__(self, population: Population, seed: int) -> None:
        rng = np.random.default_rng(np.random.SeedSequence([seed, TAG_VOLTAGE, 0]))
        self._rng = np.random.default_rng(np.random.SeedSequence([seed, TAG_VOLTAGE, 1]))
        topo = population.topology
        n = len(population)
        self.n = n
        n_tx, n_feeders = topo.n_transformers, topo.n_feeders
        self.n_tx, self.n_feeders = n_tx, n_feeders
        lv = population.is_low_voltage & (topo.transformer >= 0)

        # HV/EHV meters go into one extra bin past the real transformers / feeders
        self.tx_bin = np.where(lv, topo.transformer, n_tx).astype(np.intp)
        ehv = population.customer_type == CustomerType.EHV_FACTORY
        self.feeder_bin = np.where(ehv, n_feeders, topo.feeder).astype(np.intp)

        design_w = design_load_w(population)
        feeder_design_w = np.bincount(self.feeder_bin, weights=design_w, minlength=n_feeders + 1)
        feeder_design_w = np.maximum(feeder_design_w[:n_feeders], 1e4)
        self.inv_feeder_design = 1.0 / feeder_design_w

        self.tx_feeder = topo.transformer_feeder.astype(np.intp)
        self.tx_shape = feeder_drop_shape(topo.transformer_position)
        light, heavy = (
            SEND_NO_LOAD_PU + (SEND_LDC_PU - FEEDER_DROP_PU * self.tx_shape) * load
            for load in (LIGHT_LOAD, 1.0)
        )
        midpoint = 0.5 * (light + heavy) - 0.5 * sum(TYPICAL_LV_DROP_PU) / SECONDARY_RATED_PU
        secondary = SECONDARY_RATED_PU * midpoint[:, None] / TAPS_PU[None, :]
        ideal = np.abs(secondary - TAP_TARGET_PU).argmin(axis=1)
        error = np.where(rng.random(n_tx) < TAP_ERROR_SHARE, rng.choice([-1, 1], n_tx), 0)
        self.tap_pu = TAPS_PU[np.clip(ideal + error, 0, len(TAPS_PU) - 1)]
        # Utilities size a pole transformer (or a separate three-phase bank) to what hangs on it.
        tx_design_w = np.bincount(self.tx_bin, weights=design_w, minlength=n_tx + 1)[:n_tx]
        tx_kva = np.maximum(topo.transformer_kva, TRANSFORMER_SIZING * tx_design_w / 1e3)
        self.tx_z_pu_per_w = TRANSFORMER_DROP_PU / (tx_kva * 1e3)

        kva = np.append(tx_kva, 1.0)[self.tx_bin]
        along = rng.uniform(0.1, 1.0, n)  # where on the LV line the service drop leaves
        self.lv_z_pu_per_w = np.where(lv, LV_LINE_DROP_PU * along / (kva * 1e3), 0.0).astype(
            np.float32
        )
        contract_w = np.select(
            [population.contract_a > 0, population.contract_kw > 0],
            [population.contract_a * 100.0, population.contract_kw * 1e3],
            4000.0,
        )
        self.service_z_pu_per_w = np.where(lv, SERVICE_DROP_PU / contract_w, 0.0).astype(np.float32)
        self.offset_pu = np.where(lv, rng.normal(0.0, OFFSET_SD_PU, n), 0.0).astype(np.float32)
        nominal = np.zeros(n, dtype=np.float32)
        for meter_class, dv in NOMINAL_DV.items():
            nominal[population.meter_class == meter_class] = dv
        self.nominal_dv = np.where(lv, nominal, 0.0).astype(np.float32)
        # a uniform on [-0.5, 0.5) has standard deviation 1/sqrt(12)
        self._noise_scale = np.float32(NOISE_SD_PU * np.sqrt(12.0))

    def transformer_voltage_pu(self, net_w: F64) -> tuple[F64, F64]:
        """No-load-side secondary voltage less the transformer drop [pu] and the net load
        [W] of each transformer; HV/EHV collect in one extra entry (voltage 0)."""
        p_tx = np.bincount(self.tx_bin, weights=net_w, minlength=self.n_tx + 1).astype(np.float64)
        p_feeder = np.bincount(self.feeder_bin, weights=net_w, minlength=self.n_feeders + 1)
        load_ratio = p_feeder[: self.n_feeders] * self.inv_feeder_design
        send = SEND_NO_LOAD_PU + SEND_LDC_PU * np.clip(load_ratio, 0.0, 1.2)
        at_tx = self.tx_feeder
        v_primary = send[at_tx] - FEEDER_DROP_PU * load_ratio[at_tx] * self.tx_shape
        v_secondary = np.zeros(self.n_tx + 1)
        v_secondary[: self.n_tx] = (
            SECONDARY_RATED_PU * v_primary / self.tap_pu - self.tx_z_pu_per_w * p_tx[: self.n_tx]
        )
        return v_secondary, p_tx

    def step(self, net_w: F64) -> npt.NDArray[np.int16]:
        """Supply voltage at each meter at the end of the step [0.1 V] given each meter's net
        active power (load - PV, negative = reverse flow) [W]. Low-voltage meters: 100 V nominal
        for single-phase (meter_class LV_1P2W/LV_1P3W, phase voltage) and 200 V nominal for
        LV_3P3W. HV/EHV meters: 0."""
        net = np.asarray(net_w, dtype=np.float64)
        v_secondary, p_tx = self.transformer_voltage_pu(net)
        v = np.take(v_secondary.astype(np.float32), self.tx_bin)
        v -= self.lv_z_pu_per_w * np.take(p_tx.astype(np.float32), self.tx_bin)
        v -= self.service_z_pu_per_w * net.astype(np.float32)
        v += self.offset_pu
        noise = self._rng.random(self.n, dtype=np.float32)
        noise -= np.float32(0.5)
        noise *= self._noise_scale
        v += noise
        v *= self.nominal_dv
        return np.rint(v).astype(np.int16)
