"""
The emulator's emulated values and the upload readers the vendor modules share.

Scenarios picked by name, values derived from an input (the same input always reads the same), page
counts, Finovox-like tokens.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Sequence

# Substrings of a file name, URL or content that select a deterministic outcome (see the vendor modules).
SCENARIOS = ("fail", "never", "fraud", "reject", "noncompliant", "cancel")

T = TypeVar("T")


def seed_of(name: str, content: bytes | None = None) -> str:
    """What a job's emulated values derive from: a file's name plus its content's SHA-256, or a URL."""
    return name if content is None else f"{name}\n{hashlib.sha256(content).hexdigest()}"


@dataclass(frozen=True)
class Seeded:
    """
    Values derived from one input: the same input always reads the same, different inputs read differently.

    Each value hashes its own label, so adding a field never changes the others.
    """

    seed: str

    def hexdigest(self, label: str) -> str:
        """The SHA-256 hex digest of ``label`` with the seed."""
        return hashlib.sha256(f"{label}\n{self.seed}".encode()).hexdigest()

    def integer(self, label: str, low: int, high: int) -> int:
        """An integer from ``low`` to ``high`` inclusive, derived from ``label``."""
        return low + int(self.hexdigest(label)[:16], 16) % (high - low + 1)

    def amount(self, label: str, low: float, high: float) -> float:
        """A money amount with two decimals."""
        return self.integer(label, round(low * 100), round(high * 100)) / 100

    def choice(self, label: str, options: Sequence[T]) -> T:
        """One of ``options``, picked by ``label``."""
        return options[self.integer(label, 0, len(options) - 1)]


def scenarios_of(*texts: str | bytes | None) -> frozenset[str]:
    """The scenario keywords found, case-insensitively, in any of ``texts``."""
    blob = " ".join(t.decode("latin-1") if isinstance(t, bytes) else t for t in texts if t).lower()
    return frozenset(s for s in SCENARIOS if s in blob)


def file_extension(filename: str | None) -> str:
    """The lower-cased extension of a file name (``.pdf``), or ``""``."""
    return os.path.splitext(filename or "")[1].lower()


def pdf_page_count(content: bytes) -> int:
    """A rough page count of a PDF, at least one."""
    # Good enough for the small PDFs tests send; never less than one page.
    return max(1, len(re.findall(rb"/Type\s*/Page(?![a-z])", content)))


def fernet_like_token() -> str:
    """An opaque token shaped like a Fernet token (``gAAAAAB...``), as Finovox issues."""
    raw = b"\x80" + int(time.time()).to_bytes(8, "big") + os.urandom(96)
    return base64.urlsafe_b64encode(raw).decode()


def is_fernet_like(token: str) -> bool:
    """Whether ``token`` is URL-safe base64 shaped like a Fernet token (version byte 0x80)."""
    try:
        raw = base64.b64decode(token.encode(), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(raw) >= 57 and raw[0] == 0x80
