"""What a sensor remembers from one poke to the next within a try: failed polls in a row, logged progress."""

from __future__ import annotations

from typing import Any

FAILURES_KEY = "docjobs_failed_polls"
PROGRESS_KEY = "docjobs_logged_progress"


class PokeMemory:
    """
    A sensor's memory between pokes of one try.

    It lives on the sensor instance, except in reschedule mode: every poke then runs on a new instance, so
    it lives in the task's state store (Airflow >= 3.3), which outlives a poke, under a key per try (a new
    try starts afresh).
    """

    def __init__(self) -> None:
        self.failures = 0
        self.progress: str | None = None

    def failures_in_a_row(self, context: Any, reschedule: bool, add: int) -> int:
        """Count failed polls in a row (``add=0`` resets) and return the count."""
        store = context.get("task_state_store") if reschedule else None
        if store is None:
            self.failures = self.failures + 1 if add else 0
            return self.failures
        key = f"{FAILURES_KEY}_{context['ti'].try_number}"
        before = int(store.get(key) or 0)
        count = before + 1 if add else 0
        if count != before:
            store.set(key, count)
        return count

    def progress_changed(self, context: Any, reschedule: bool, progress: str | None) -> bool:
        """Whether progress moved since it was last logged (and remember it)."""
        store = context.get("task_state_store") if reschedule else None
        if store is None:
            changed, self.progress = progress != self.progress, progress
            return changed
        key = f"{PROGRESS_KEY}_{context['ti'].try_number}"
        if store.get(key) == (progress or ""):
            return False
        store.set(key, progress or "")
        return True
