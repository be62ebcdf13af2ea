"""Secrets stay secret (SPEC X3, information managed without leaks): passwords are masked in
whatever kenshin prints, logs or raises, and the files kenshin creates are its user's alone.

- :func:`redact` masks the password of every URL (``scheme://user:***@host``) and every libpq
  ``password=`` pair in a text, for messages that quote what a user typed or a library's error
  about it (libpq repeats a whole unparsable URI in its message).
- :func:`private_umask` and :func:`make_private_dir`: files 0600 and directories 0700. A library
  that creates its own files (DuckDB's database, write-ahead log and spill files, Arrow's Parquet
  files) follows the process umask, which is why the ``kenshin`` command sets ``0o077`` for the
  whole process at start (as PostgreSQL's server does) and the stores set it around the
  creations they can see.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MASK = "***"
PRIVATE_UMASK = 0o077  # no permission for group or others: files 0600, directories 0700

# scheme://user:password@ (the password ends at the last "@" before the host part)
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@'\"]*:)[^\s/'\"]*@")
# libpq's password=value, bare, quoted (value may hold escaped quotes) or in a URI query
_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&'\"]*)")


def redact(text: str) -> str:
    """``text`` with every URL password and ``password=`` value replaced by ``***``."""
    text = _URL_PASSWORD.sub(rf"\g<1>{MASK}@", text)
    return _KEYWORD_PASSWORD.sub(rf"\g<1>{MASK}", text)


_umask_lock = threading.Lock()
_umask_depth = 0
_umask_saved = 0


@contextmanager
def private_umask() -> Iterator[None]:
    """Files and directories created meanwhile, by kenshin or a library, get no permission for
    group or others. The umask is the process's: threads nest safely (the first to enter saves
    it, the last to leave restores it), and another thread's files are only made more private."""
    global _umask_depth, _umask_saved
    with _umask_lock:
        if _umask_depth == 0:
            _umask_saved = os.umask(PRIVATE_UMASK)
            os.umask(_umask_saved | PRIVATE_UMASK)  # stricter bits the process had stay
        _umask_depth += 1
    try:
        yield
    finally:
        with _umask_lock:
            _umask_depth -= 1
            if _umask_depth == 0:
                os.umask(_umask_saved)


def make_private_dir(path: Path) -> None:
    """``path`` and its missing parents, created 0700 (existing directories are left alone)."""
    with private_umask():
        path.mkdir(parents=True, exist_ok=True)


def is_private(mode: int) -> bool:
    """True if a file's ``st_mode`` gives group and others no permission at all."""
    return mode & 0o077 == 0
