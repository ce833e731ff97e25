"""
The batch poll schedule (``triggers/schedule.py``) against a simulated vendor that runs ``concurrency``
jobs at once, oldest first, all accepted when the trigger starts (the hardest start: no job has ended and
the plan knows nothing yet).

What it achieves, measured here and in ``docs/design.md``: far fewer polls than polling every job every
interval (today's rule before it: ``duration / interval`` polls per job, 2 to 4 in these settings), a median
lag of up to two thirds of an interval, and a worst lag of
1.5 to 3 intervals, not the one interval issue 19 asks for.
"""

from __future__ import annotations

import hashlib
import heapq
import math

import pytest

from airflow_docjobs.triggers.schedule import FIRST_WINDOW, PollPlan

TICK = 0.01


def vendor_ends(count: int, concurrency: int, seconds: float, spread: float, accepted: float) -> list[float]:
    """When each job ends at a vendor running ``concurrency`` at once, oldest first; all accepted at once."""
    slots = [accepted] * concurrency
    ends = []
    for n in range(count):
        fraction = int(hashlib.sha256(str(n).encode()).hexdigest()[:8], 16) / 0x100000000
        start = heapq.heappop(slots)
        ends.append(start + seconds + spread * fraction)
        heapq.heappush(slots, ends[-1])
    return ends


def run(ends: list[float], interval: float, start: float) -> tuple[list[int], list[float], list[float]]:
    """Drive a plan as ``_Batch`` does (answers take no time); polls per job, when each was found, poll times."""
    plan = PollPlan(list(range(len(ends))), start, interval, TICK)
    schedule = plan.initial()
    heapq.heapify(schedule)
    polls, found, times = [0] * len(ends), [math.nan] * len(ends), []
    while schedule:
        due, index = heapq.heappop(schedule)
        now = math.ceil(due / TICK - 1e-9) * TICK  # the trigger's tick grid
        polls[index] += 1
        times.append(now)
        if now >= ends[index]:
            found[index] = now
            new = plan.ended(index, now)
        else:
            new = plan.pending(index, now)
        for entry in new:
            heapq.heappush(schedule, entry)
    assert not plan.remaining()
    return polls, found, times


@pytest.mark.parametrize(
    ("concurrency", "seconds", "spread", "interval", "max_polls", "max_lag"),
    [
        (50, 2.0, 0.0, 1.0, 1.8, 1.5),  # the nightly benchmark's vendor: 3.8 requests per Mindee document
        (10, 30.0, 90.0, 30.0, 2.4, 2.2),  # Finovox-like, 30-120 s: ceil((d - 30) / 30) = 2 polls at least
        (50, 2.0, 3.0, 1.0, 1.85, 3.0),  # 2-5 s
    ],
)
def test_jobs_are_polled_around_their_end(concurrency, seconds, spread, interval, max_polls, max_lag):
    ends = vendor_ends(1000, concurrency, seconds, spread, accepted=0.0)
    polls, found, _ = run(ends, interval, start=interval)
    lags = sorted(f - max(e, interval) for f, e in zip(found, ends, strict=True))
    assert lags[0] >= 0
    assert lags[len(lags) // 2] <= 2 / 3 * interval, lags[len(lags) // 2]
    assert lags[-1] <= max_lag * interval, lags[-10:]  # in intervals: issue 19 asks for 1
    assert sum(polls) / len(polls) <= max_polls, sum(polls) / len(polls)


def test_jobs_that_cannot_have_ended_are_not_asked():
    """While nothing ends, only the first window is polled, once per interval: the rest are parked."""
    ends = [1000.0] * 500
    plan = PollPlan(list(range(500)), 1.0, 1.0, TICK)
    schedule = plan.initial()
    asked: set[int] = set()
    polls = 0
    while schedule and schedule[0][0] < 20:
        due, index = heapq.heappop(schedule)
        asked.add(index)
        polls += 1
        assert due < ends[index]
        for entry in plan.pending(index, due):
            heapq.heappush(schedule, entry)
    assert asked <= set(range(FIRST_WINDOW))
    assert polls <= FIRST_WINDOW * 20
    assert len(plan.remaining()) == 500 - FIRST_WINDOW


def test_a_batch_whose_first_jobs_ended_long_ago_is_caught_up_by_probes():
    """400 jobs ended before the trigger started: found within about an interval, a few probes wasted."""
    ends = vendor_ends(1000, 50, 2.0, 0.0, accepted=-16.0)
    polls, found, _ = run(ends, 1.0, start=1.0)
    backlog = [n for n, e in enumerate(ends) if e <= 0]
    assert len(backlog) == 400
    assert max(found[n] for n in backlog) <= 2.0  # all found in the first second of polling
    lags = sorted(f - max(e, 1.0) for f, e in zip(found, ends, strict=True))
    assert lags[-1] <= 2.0  # and every later one within two intervals of its end
    assert sum(polls) / len(polls) <= 1.5


def test_the_vendors_progress_brings_a_re_check_forward():
    plan = PollPlan([0, 1], 1.0, 10.0, TICK)
    plan.initial()
    assert plan.pending(0, 1.0, fraction=0.9) == [(pytest.approx(2.0), 0)]  # lead 10 s, 10 % to go
    assert plan.pending(1, 1.0, fraction=None) == [(11.0, 1)]  # no hint: one interval
