"""Parsing of the small integer codes kenshin stores (channels, customer types, ...)."""

from __future__ import annotations

from enum import IntEnum
from typing import TypeVar

E = TypeVar("E", bound=IntEnum)


def parse_code(cls: type[E], value: int | str, what: str) -> E:
    """A member of ``cls`` from its code (``1``, ``"1"``) or its name in any case.

    Raises ValueError naming ``what`` and listing the valid names.
    """
    text = str(value).strip()
    if text.isdigit() and int(text) in cls._value2member_map_:
        return cls(int(text))
    try:
        return cls[text.upper()]
    except KeyError:
        names = ", ".join(member.name.lower() for member in cls)
        raise ValueError(f"unknown {what} {value!r}; valid: {names}") from None
