"""
The batch poll schedule (``triggers/schedule.py``) driven as ``_Batch`` drives it, with answers that take
time: ``MAX_IN_FLIGHT`` polls at once, each answered ``latency`` seconds after it is sent, on the
trigger's tick grid, and optionally 1 % of polls failing after the hook's retries (asked again half an
interval later, as the trigger does). Prints polls per job and the lag (seconds from a job's end to the
poll that found it: median, worst, how many later than one interval) for the soak's vendor (groups of
jobs ending together, no concurrency limit) and the nightly benchmark's (a FIFO vendor).

The nightly rows replay ``benchmarks/nightly.py``'s run as well: 1,000 jobs submitted at 85 a second
(its submit takes about 12 s) and polled in the order the vendor took them, the sensor's round at the
submit's end landing the oldest ended ones up to the first pending, the trigger polling the rest from an
interval after that round. With ``--frontier``
they are run for several window widths (``schedule.WIDEN``): the requests per document (Mindee v1's,
counted as the benchmark counts them) against the jobs found late, the trade-off ``docs/design.md`` shows.

    .venv/bin/python benchmarks/plan_sim.py [--frontier]

``tests/test_poll_plan.py`` checks the same schedule with answers that take no time.
"""

from __future__ import annotations

import heapq
import math
import statistics
import sys
from pathlib import Path

from airflow_docjobs.triggers import schedule
from airflow_docjobs.triggers.job import MAX_IN_FLIGHT, poll_tick
from airflow_docjobs.triggers.schedule import PollPlan

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).parent))
from nightly import SETTINGS, Setting  # the nightly benchmark's vendor settings (in their own seconds)
from test_poll_plan import answer, groups_ending_together, vendor_ends


def fifo_ends(setting: Setting, **arrivals: float) -> list[float]:
    """When each of 1,000 jobs ends at the setting's FIFO vendor (``vendor_ends``'s arrivals)."""
    spread = setting.seconds_max - setting.seconds
    return vendor_ends(1000, setting.concurrency, setting.seconds, spread, accepted=0.0, **arrivals)


def drive(
    ends: list[float],
    interval: float,
    latency: float,
    fail_every: int = 0,
    share=None,
    start: float | None = None,
) -> tuple:
    """
    (polls per job, median lag, worst lag, jobs found later than one interval). The first polls are at
    ``start`` (default: one interval), the lag counts from a job's end or, when ``start`` is not given,
    from the first interval, whichever is later.
    """
    tick = poll_tick(interval)
    plan = PollPlan(list(range(len(ends))), interval if start is None else start, interval, tick)
    due = plan.initial()
    heapq.heapify(due)
    running: list[tuple[float, int, int, float]] = []  # (answered at, job, poll number, sent at)
    found, sent, now = [math.nan] * len(ends), 0, 0.0
    while due or running:
        answer_at = running[0][0] if running else math.inf
        free = len(running) < MAX_IN_FLIGHT
        send_at = math.ceil(due[0][0] / tick - 1e-9) * tick if due and free else math.inf
        if answer_at <= send_at:
            now, index, number, at = heapq.heappop(running)
            failed = bool(fail_every) and number % fail_every == 0
            for entry in answer(plan, index, now, ends, found, failed, share, sent=at):
                heapq.heappush(due, entry)
            continue
        when, index = heapq.heappop(due)
        if plan.current(when, index):
            now, sent = max(now, send_at), sent + 1
            heapq.heappush(running, (now + latency, index, sent, now))
    counted_from = interval if start is None else 0.0
    lags = sorted(f - max(e, counted_from) for f, e in zip(found, ends, strict=True))
    late = sum(lag > interval for lag in lags)
    return round(sent / len(ends), 2), round(statistics.median(lags), 1), round(lags[-1], 1), late


def nightly(setting: Setting, rate: float = 85.0) -> str:
    """One nightly benchmark run replayed: requests per document, worst lag (in intervals), jobs found late."""
    # Submitted 8 at once, the jobs reach the vendor a few places out of the inputs' order; the sensor hands
    # them to the trigger in the order the vendor took them (the submit's record), one upload at a time here.
    ends = fifo_ends(setting, rate=rate)
    documents, interval = len(ends), setting.poke_interval
    round_at = documents / rate  # the sensor's round, after the submit
    first = next(n for n, end in enumerate(ends) if end > round_at)  # it lands these, up to the first pending
    left = [end - round_at for end in ends[first:]]
    polls, _, worst, late = drive(left, interval, 0.02 * interval, start=interval - poll_tick(interval))
    # The enqueue and the document for each, the round's polls (one pending), the trigger's polls.
    requests = 2 * documents + first + 1 + polls * len(left)
    return f"{requests / documents:.2f} req/doc, worst {worst / interval:.1f} intervals, {late:3} late"


def main() -> None:
    if "--frontier" in sys.argv:
        print("WIDEN  " + "  |  ".join(f"{name:<39}" for name in SETTINGS))
        for widen in (1.0, 1.25, 1.5, 1.75, 2.0):
            schedule.WIDEN = widen
            print(f"{widen:<5}  " + "  |  ".join(nightly(setting) for setting in SETTINGS.values()))
        return
    soak = groups_ending_together(9, 1000, 115.0, 60.0)
    percent = lambda i, now: int(100 * now / soak[i]) / 100  # noqa: E731  # docimprint's progress_pct
    print("vendor                        latency s  faults  share done  polls/job  median s  worst s  late")
    for latency in (0.0, 0.05, 0.2):
        for fail_every in (0, 100):
            for share in (None, percent):
                row = drive(soak, 30.0, latency, fail_every, share)
                print(
                    f"soak: 9 x 1,000 together, 30 s {latency:9} {fail_every and '1 %':>7} {bool(share)!s:>11}",
                    *row,
                )
    for name, setting in SETTINGS.items():
        interval = setting.poke_interval
        label = f"FIFO {setting.seconds:g}-{setting.seconds_max:g} s x {setting.concurrency}, {interval:g} s"
        row = drive(fifo_ends(setting), interval, 0.02 * interval)
        print(f"{label:<29} {0.02 * interval:9}       -       False", *row)
        print(f"  as the nightly run ({name}): {nightly(setting)}")


if __name__ == "__main__":
    main()
