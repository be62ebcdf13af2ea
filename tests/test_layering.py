"""The layering rules of docs/architecture.md, checked by importing in a fresh interpreter.

A real deployment has no simulated fleet: the head-end, the MDMS, the A-route protocol and the
API must import without ``kenshin.fleet``, and the MDMS must not depend on the head-end.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import textwrap

import pytest

import kenshin

# the network model of the A-route simulates radio links; it is not a protocol module
SIMULATION_MODULES = {"kenshin.aroute.network"}
# everything but the edge (kenshin.cli): the packages, the composition root and the network planner
PROTOCOL_AND_ROOT = (
    "kenshin.core",
    "kenshin.grid",
    "kenshin.fleet",
    "kenshin.aroute",
    "kenshin.broute",
    "kenshin.hes",
    "kenshin.mdms",
    "kenshin.api",
    "kenshin.control",
    "kenshin.app",
    "kenshin.netplan",
)


def _modules(*packages: str) -> list[str]:
    names = []
    for package in packages:
        names.append(package)
        path = [f"{kenshin.__path__[0]}/{package.split('.', 1)[1].replace('.', '/')}"]
        for info in pkgutil.walk_packages(path, prefix=f"{package}."):
            if info.name not in SIMULATION_MODULES:
                names.append(info.name)
    return sorted(names)


def _import_with_blocked(modules: list[str], blocked: str) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(
        f"""
        import importlib, sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == {blocked!r} or name.startswith({blocked!r} + "."):
                    raise ImportError(f"layering: {{name}} is imported")
                return None

        sys.meta_path.insert(0, Block())
        for name in {modules!r}:
            importlib.import_module(name)
        print(len({modules!r}))
        """
    )
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("packages", "blocked"),
    [
        (
            (
                "kenshin.core",
                "kenshin.hes",
                "kenshin.mdms",
                "kenshin.aroute",
                "kenshin.api",
                "kenshin.control",
            ),
            "kenshin.fleet",
        ),
        (
            ("kenshin.core", "kenshin.hes", "kenshin.mdms", "kenshin.aroute", "kenshin.api"),
            "kenshin.cli",
        ),
        (("kenshin.mdms",), "kenshin.hes"),
        # the command line's typer and rich stay in kenshin.cli
        (PROTOCOL_AND_ROOT, "typer"),
        (PROTOCOL_AND_ROOT, "rich"),
        (("kenshin.core",), "kenshin.aroute"),
    ],
)
def test_inner_packages_import_without(packages: tuple[str, ...], blocked: str) -> None:
    modules = _modules(*packages)
    assert len(modules) > len(packages)  # the walk found the modules themselves
    result = _import_with_blocked(modules, blocked)
    assert result.returncode == 0, result.stderr.strip().splitlines()[-1:]
    assert result.stdout.strip() == str(len(modules))


def test_the_blocker_blocks() -> None:
    """The check can fail: the composition root does need the fleet."""
    result = _import_with_blocked(["kenshin.app.system"], "kenshin.fleet")
    assert result.returncode != 0
    assert "layering: kenshin.fleet" in result.stderr


def test_no_module_needs_a_table_of_contents() -> None:
    """A module over 700 lines is two modules (issue 11; the guide's "one house")."""
    from pathlib import Path

    import kenshin

    root = Path(kenshin.__file__).parent
    sizes = {
        str(path.relative_to(root)): len(path.read_text(encoding="utf-8").splitlines())
        for path in root.rglob("*.py")
    }
    assert len(sizes) > 50
    assert {name: n for name, n in sizes.items() if n > 700} == {}
