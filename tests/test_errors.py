"""The error tree in kenshin.errors' docstring names every error kenshin raises on purpose."""

from __future__ import annotations

import importlib
import pkgutil
import re

import pytest

import kenshin
from kenshin import errors


def _all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_all_subclasses(sub)}
    return found


def test_the_documented_tree_names_every_error() -> None:
    for info in pkgutil.walk_packages(kenshin.__path__, prefix="kenshin."):
        if info.name.startswith("kenshin.cli") or info.name == "kenshin.__main__":
            continue  # entry points: importing them builds the command line
        importlib.import_module(info.name)
    classes = {c.__name__ for c in _all_subclasses(errors.KenshinError)}
    documented = set(re.findall(r"[├└]── (\w+)", errors.__doc__ or ""))
    assert classes, "no error classes found"
    assert classes == documented, (
        f"undocumented: {sorted(classes - documented)}; gone: {sorted(documented - classes)}"
    )


def test_transport_errors_are_kenshin_errors() -> None:
    from kenshin.aroute.link import MemoryBroker

    broker = MemoryBroker()
    link = broker.connect("w", ("t",))
    broker.kill("w")
    with pytest.raises(errors.TransportError) as info:
        link.receive(0.0)
    assert isinstance(info.value, errors.LinkClosed)
