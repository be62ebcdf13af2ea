import datetime as dt

import pytest

from kenshin.core.channels import Channel
from kenshin.core.meterspec import SPEC_TABLE, BRouteMedium, Generation, MeterClass, meter_spec
from kenshin.core.timeslots import Resolution


def test_gen2_lv_records_what_spec_m1_lists():
    spec = meter_spec(Generation.GEN2, MeterClass.LV_1P3W)
    assert spec.channels[Resolution.MIN30] == (Channel.ACTIVE_FORWARD, Channel.ACTIVE_REVERSE)
    assert spec.records(Channel.ACTIVE_FORWARD, Resolution.MIN15)
    assert spec.records(Channel.VOLTAGE, Resolution.MIN5)
    assert spec.records(Channel.REACTIVE, Resolution.MIN5)
    assert spec.channels[Resolution.MIN1] == (Channel.ACTIVE_FORWARD,)
    assert spec.retention[Resolution.MIN1] == dt.timedelta(minutes=60)
    assert spec.aroute_deadline == dt.timedelta(minutes=60)
    assert spec.broute_media == (BRouteMedium.WISUN, BRouteMedium.WIFI)
    assert spec.has_switch and spec.max_ampere_limit_a == 120
    assert spec.echonet_class == 0x0288
    assert spec.register.digits == 8


def test_gen1_lv_is_30_min_only_45_days_60_a():
    spec = meter_spec(Generation.GEN1, MeterClass.LV_1P2W)
    assert spec.resolutions == (Resolution.MIN30,)
    assert spec.retention[Resolution.MIN30] == dt.timedelta(days=45)
    assert spec.max_ampere_limit_a == 60
    assert not spec.records(Channel.ACTIVE_FORWARD, Resolution.MIN5)


def test_hv_has_no_switch_no_voltage_and_a_30_minute_deadline():
    for gen in Generation:
        for cls in (MeterClass.HV, MeterClass.EHV):
            spec = meter_spec(gen, cls)
            assert not spec.has_switch and spec.max_ampere_limit_a is None
            assert spec.aroute_deadline == dt.timedelta(minutes=30)
            assert spec.records(Channel.REACTIVE, Resolution.MIN30)
            assert not spec.records(Channel.VOLTAGE, Resolution.MIN5)
            assert spec.echonet_class == 0x028A
            assert spec.broute_media[0] is BRouteMedium.ETHERNET


def test_three_phase_lv_has_no_switch():
    assert not meter_spec(Generation.GEN2, MeterClass.LV_3P3W).has_switch


def test_table_is_complete():
    assert len(SPEC_TABLE) == len(Generation) * len(MeterClass)


def test_retention_override_applies_to_gen2_only():
    spec = meter_spec(Generation.GEN2, MeterClass.LV_1P3W, retention_5=dt.timedelta(days=3))
    assert spec.retention[Resolution.MIN5] == dt.timedelta(days=3)
    gen1 = meter_spec(Generation.GEN1, MeterClass.LV_1P3W, retention_30_15=dt.timedelta(days=400))
    assert gen1.retention[Resolution.MIN30] == dt.timedelta(days=45)
    with pytest.raises(ValueError, match="positive"):
        meter_spec(Generation.GEN2, MeterClass.HV, retention_5=dt.timedelta(0))


def test_codes_parse_from_number_or_name():
    from kenshin.core.customers import CustomerType

    assert Channel.parse("1") is Channel.ACTIVE_FORWARD
    assert Channel.parse("Voltage") is Channel.VOLTAGE
    assert CustomerType.parse(" hv_factory ") is CustomerType.HV_FACTORY
    with pytest.raises(ValueError, match="unknown channel 'power'; valid: active_forward"):
        Channel.parse("power")
    with pytest.raises(ValueError, match="unknown customer type 9; valid: household_detached"):
        CustomerType.parse(9)
