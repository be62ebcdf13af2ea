"""The kenshin command caps glibc's malloc arenas (kenshin.app.allocator): counted by glibc."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from kenshin.app.allocator import cap_malloc_arenas

# threads that each allocate and hold blocks malloc serves from an arena (below its mmap
# threshold), all alive at once; then glibc's own report of its arenas (one <heap> each)
_PROBE = textwrap.dedent(
    """
    import ctypes, sys, tempfile, threading
    from kenshin.app.allocator import cap_malloc_arenas
    if sys.argv[1] == "cap":
        assert cap_malloc_arenas(2)
    held, ready, done = [], threading.Barrier(7), threading.Event()
    def work():
        held.extend(bytearray(64_000) for _ in range(50))
        ready.wait()
        done.wait()
    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    ready.wait()
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    with tempfile.NamedTemporaryFile(suffix=".xml") as out:
        fp = libc.fopen(out.name.encode(), b"w")
        libc.malloc_info(0, fp)
        libc.fclose(fp)
        print(open(out.name).read().count("<heap nr="))
    done.set()
    """
)


def _arenas(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    run = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    return int(run.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_the_cap_keeps_six_threads_in_two_arenas() -> None:
    assert _arenas("free") > 2  # the probe can tell: uncapped, the threads take arenas of their own
    assert _arenas("cap") <= 2


def test_a_value_set_in_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert cap_malloc_arenas() is False


def test_no_arena_at_all_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        cap_malloc_arenas(0)
