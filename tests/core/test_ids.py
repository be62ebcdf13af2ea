import numpy as np
import pytest

from kenshin.core.ids import Area, area_of, make_supply_point_ids, validate_supply_point_id
from kenshin.errors import InvalidSupplyPointId

GOOD = "0312345678901234567890"


def test_valid_id_passes_and_names_its_area():
    assert validate_supply_point_id(GOOD) == GOOD
    assert area_of(GOOD) is Area.TOKYO
    assert area_of("10" + "0" * 20) is Area.OKINAWA


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("031234567890123456789", "must have 22 digits, got 21"),
        ("03123456789012345678901", "must have 22 digits, got 23"),
        ("03123456789O1234567890", "'O' at position 12"),
        ("0012345678901234567890", "area code '00'"),
        ("1112345678901234567890", "area code '11'"),
        (" 312345678901234567890", "' ' at position 1"),
        (3123456789012345678901, "got int"),
    ],
)
def test_invalid_ids_say_what_is_wrong(value, message):
    with pytest.raises(InvalidSupplyPointId, match=message):
        validate_supply_point_id(value)


def test_made_ids_are_valid_and_unique():
    ids = make_supply_point_ids(Area.KANSAI, np.arange(1000, dtype=np.int64), prefix=123456)
    assert len(set(ids)) == 1000
    assert all(validate_supply_point_id(i) and i.startswith("06123456") for i in ids)


def test_area_parse():
    assert Area.parse("03") is Area.TOKYO
    assert Area.parse("kyushu") is Area.KYUSHU
    with pytest.raises(ValueError, match="unknown area"):
        Area.parse("11")
