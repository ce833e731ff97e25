"""
Transient trouble in the trigger: a failed poll is counted, backed off (doubling from the poll interval)
and polled again; a healthy poll resets the count; ``max_consecutive_failures`` in a row end the wait.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from conftest import POLL_PATHS, answered, journal, until
from test_trigger import first_event, submit_docimprint, trigger_for

from airflow_docjobs.emulator import Fault

POLL = POLL_PATHS["docimprint"]


def fault(**kw) -> Fault:
    return Fault(vendor="docimprint", path=POLL, **kw)


async def test_transient_trouble_never_ends_the_wait(frozen):
    job = submit_docimprint()
    frozen.state.advance(5)
    # Each poll makes 3 attempts: 7 failed requests span 2 failed polls and the third poll's first
    # attempt; its second draws a gateway's HTML page, retried as a 502 is, and its third reads the result.
    frozen.state.faults.extend([fault(status=503, times=7), fault(status=200, body="<html>", times=1)])
    assert await first_event(trigger_for(job)) == {"status": "success"}
    assert all(f.used_up() for f in frozen.state.faults)
    assert len(journal(frozen, POLL)) == 7 + 1 + 1


async def test_failed_polls_in_a_row_end_the_wait(frozen):
    job = submit_docimprint()
    frozen.state.faults.append(fault(status=502))
    event = await first_event(trigger_for(job, max_consecutive_failures=2))
    assert event["status"] == "error"
    assert event["error_type"] == "VendorTransientError"
    assert "2 polls in a row failed" in event["message"]
    assert len(journal(frozen, POLL)) == 2 * 3  # two polls of three attempts, then no more


async def test_a_healthy_poll_resets_the_count(frozen, vendor_conn):
    """Fail, pending, fail, pending, fail: never two in a row, so the wait goes on to the job's end."""
    vendor_conn("docimprint", max_attempts=1)  # one request per poll
    job = submit_docimprint()
    # Faults are taken in order; one with no status lets the emulator answer for real (pending).
    failed, healthy = {"status": 503, "times": 1}, {"times": 1}
    frozen.state.faults.extend(fault(**kw) for kw in (failed, healthy, failed, healthy, failed))
    waiting = asyncio.create_task(first_event(trigger_for(job, max_consecutive_failures=2)))
    await until(lambda: len(answered(frozen, POLL)) >= 6 or waiting.done())
    frozen.state.advance(5)
    assert await waiting == {"status": "success"}
    assert all(f.used_up() for f in frozen.state.faults)


def log_times(text: str, marker: str) -> list[float]:
    """The epoch times of the log lines that contain ``marker`` (each line starts with its ISO time)."""
    return [
        datetime.fromisoformat(line.split(" ", 1)[0]).timestamp()
        for line in text.splitlines()
        if marker in line
    ]


async def test_back_off_doubles_between_failed_polls(frozen, vendor_conn, capfd):
    vendor_conn("docimprint", max_attempts=1)
    job = submit_docimprint()
    frozen.state.faults.append(fault(status=503))
    interval = 0.1
    event = await first_event(trigger_for(job, poll_interval=interval, max_consecutive_failures=4))
    ended = time.time()
    assert event["status"] == "error"
    assert len(journal(frozen, POLL)) == 4
    failed = log_times(capfd.readouterr().out, "in a row), will retry")
    assert len(failed) == 3
    # After the k-th failure in a row the next poll waits 2**(k-2) intervals: 0.05 s, 0.1 s, then 0.2 s,
    # counted from when the failed poll was sent. The first poll opens the connection, which may take
    # longer than 0.05 s when this test runs alone: its wait is not measured.
    waits = [b - a for a, b in zip(failed, [*failed[1:], ended], strict=True)]
    for k, waited in enumerate(waits[1:], start=2):
        assert waited >= 0.95 * interval * 2 ** (k - 2), waits
    assert waits[2] > 1.5 * waits[1], waits  # doubling, not a fixed wait
