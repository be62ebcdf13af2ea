"""The guides in docs/guides.md run as written (issue 13 item 9): each guide's shell commands
(``$ kenshin …``, a trailing ``&`` for a server left running) and Python programs, in order, in
an empty directory; every step must succeed. Servers are stopped at the end."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

GUIDES = Path(__file__).parents[1] / "docs" / "guides.md"
BLOCK = re.compile(r"```(console|python)\n(.*?)```", re.S)


def guides() -> dict[str, list[tuple[str, str]]]:
    """name → [(kind, text)] of the code blocks after ``<!-- guide: name -->``."""
    found: dict[str, list[tuple[str, str]]] = {}
    text = GUIDES.read_text(encoding="utf-8")
    parts = re.split(r"<!-- guide: ([a-z]+) -->", text)
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        section = body.split("\n## ")[0]
        found[name] = [(m[1], m[2]) for m in BLOCK.finditer(section)]
    return found


def test_every_guide_is_found() -> None:
    assert set(guides()) == {"hems", "engineer", "researcher"}
    assert all(blocks for blocks in guides().values())


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(guides()))
def test_the_guide_runs_as_written(name: str, tmp_path: Path) -> None:
    kenshin = [sys.executable, "-m", "kenshin"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    background: list[subprocess.Popen[bytes]] = []
    try:
        for kind, text in guides()[name]:
            if kind == "python":
                done = subprocess.run(
                    [sys.executable, "-c", text],
                    cwd=tmp_path,
                    env=env,
                    capture_output=True,
                    timeout=300,
                )
                assert done.returncode == 0, done.stderr.decode()[-3000:]
                continue
            for line in text.replace("\\\n", " ").splitlines():
                if not line.startswith("$ "):
                    continue
                words = shlex.split(line[2:])
                server = words[-1] == "&"
                words = words[:-1] if server else words
                assert words[0] == "kenshin", line
                command = kenshin + words[1:]
                if server:
                    background.append(
                        subprocess.Popen(
                            command,
                            cwd=tmp_path,
                            env=env,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            start_new_session=True,
                        )
                    )
                    continue
                done = subprocess.run(
                    command, cwd=tmp_path, env=env, capture_output=True, timeout=600
                )
                assert done.returncode == 0, f"{line}\n{done.stderr.decode()[-3000:]}"
        for process in background:
            assert process.poll() is None, "a server of the guide stopped by itself"
    finally:
        for process in background:  # Ctrl-C, as a user stops them; then for sure
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=20)
