"""
A batch trigger's poll schedule, run for real against the emulator on its own clock (a clock stepped by
the test ran three times slower than the trigger's on a loaded machine, and the vendor with it): the vendor
runs 5 jobs at once, oldest first, and knows when each job ended and when a poll first answered that it had.
The schedule's rules are checked on a simulated clock, exactly, in ``test_poll_plan.py``.
"""

from __future__ import annotations

import asyncio

from test_trigger_batch import batch_trigger, first_event, store_in, submit_docimprint

JOBS, CONCURRENCY, SECONDS, INTERVAL = 30, 5, 0.5, 0.2


async def test_each_job_is_polled_around_its_end(emulator, tmp_path):
    state = emulator.state
    state.settings.update({"processing_seconds": SECONDS, "concurrency": CONCURRENCY})
    try:
        jobs = submit_docimprint(*(f"{n}.pdf" for n in range(JOBS)))
        state.reset_counters()
        waiting = asyncio.ensure_future(
            first_event(batch_trigger(jobs, store_in(tmp_path), interval=INTERVAL))
        )
        event = await waiting
    finally:
        state.settings.update({"concurrency": 0})
    assert event == {"status": "success", "succeeded": JOBS, "failed": 0, "already_landed": 0}
    lags = state.lags()
    assert lags["found"] == JOBS
    # Polling every job every interval (the rule before the schedule) asks each about its whole wait in
    # the vendor's queue, 3 s / 0.2 s = 15 times for the last ones, 240 polls in all; the schedule
    # 125 on a simulated clock, 160 here (16 jobs are polled before the batch shows the vendor runs 5).
    assert state.stats()["requests"] <= 6 * JOBS, state.stats()
    assert lags["median_lag_s"] <= INTERVAL, lags
    assert lags["worst_lag_s"] <= 2.5 * INTERVAL, lags  # tests/test_poll_plan.py: not yet 1 interval
