"""
A batch's poll schedule: each job asked around when it can have ended, oldest first, none found late.

Pure bookkeeping on the event loop's clock: ``_Batch`` (``job.py``) sends the polls and tells the plan
what each answered; the plan says which jobs to ask next and when. The rules, and the measurements that
chose them, are in ``docs/design.md`` ("The poll schedule"). Nothing here knows a vendor: what it learns
comes from the answers (ended or not, and the share done when the vendor says).
"""

from __future__ import annotations

import math
from collections import deque

# Jobs polled at first, before the batch has shown how many the vendor runs at once.
FIRST_WINDOW = 16
# The lead (admission to first poll) after a first poll that found its job ended / still pending: it
# settles where about one first poll in six finds its job pending (0.17 * ln 1.1 = 0.83 * -ln 0.98).
SHORTEN, LENGTHEN = 0.98, 1.1
# The window holds at most this many times the jobs found ended in the last lead + interval seconds.
WINDOW_SLACK = 2.0

Due = tuple[float, int]  # (when, job index): an entry of the batch's heap


class PollPlan:
    """
    Which jobs of a batch to poll, and when.

    * **Oldest first.** Jobs are taken in the batch's order (the submit's, which is the order the vendor
      accepted them); the rest are parked and cost nothing. A vendor runs its oldest jobs first, so a
      parked job is one that has not started.
    * **A window as wide as the vendor's work.** At first :data:`FIRST_WINDOW` jobs are polled, one
      interval after the trigger starts (the sensor has just polled), spread over that interval. Each job
      found ended lets the next parked one in (the vendor started it when it freed a slot), unless the
      window already holds :data:`WINDOW_SLACK` times the jobs found ended in the last ``lead + interval``
      seconds (it widened to catch up and the vendor does not run that many at once).
    * **A probe finds the vendor's width.** After a job is found ended, the next parked job is polled at
      once; ended, it widens the window by one and the next is probed; pending, it is parked again and
      no probe is sent for ``lead`` seconds.
    * **First poll after ``lead`` seconds.** A job let in is first polled ``lead`` seconds later. The lead
      starts at the poll interval and follows what first polls find: 10 % longer after one that found
      its job pending, 2 % shorter after one that found it ended, and never more than the shortest time a
      job took from admission to being found ended plus one interval.
    * **Re-checks bounded by the interval.** A job found pending is asked again after the poll interval,
      or sooner when the vendor says how much is done: after ``lead * (1 - fraction)``, at least a tick.
    """

    def __init__(self, order: list[int], start: float, interval: float, tick: float) -> None:
        self.interval, self.tick = interval, tick
        self.parked: deque[int] = deque(order)
        self.lead = interval
        self.shortest = math.inf  # fewest seconds from admission to found ended, over the learned jobs
        # Admitted jobs still pending: when each was let in (None for the first window: unknown start).
        self.admitted: dict[int, float | None] = {}
        self.polled: set[int] = set()  # admitted jobs asked at least once
        self.ends: deque[float] = deque()  # when jobs were found ended, the last lead + interval seconds
        self.probe: int | None = None
        self.probe_after = start
        self.first = [self.parked.popleft() for _ in range(min(len(order), FIRST_WINDOW))]
        for index in self.first:
            self.admitted[index] = None
        self.start = start

    def initial(self) -> list[Due]:
        """The first window's polls: from ``start``, spread over one interval."""
        count = max(1, len(self.first))
        return [(self.start + self.interval * n / count, i) for n, i in enumerate(self.first)]

    def remaining(self) -> list[int]:
        """The jobs no poll is scheduled for (parked), oldest first."""
        return list(self.parked)

    def pending(self, index: int, now: float, fraction: float | None = None) -> list[Due]:
        """A poll found job ``index`` pending: when to ask again, and what else to ask."""
        if index == self.probe and len(self.admitted) > 1:  # not started: park it again, probe later
            self.probe = None
            self.probe_after = now + self.lead
            self.admitted.pop(index, None)
            self.parked.appendleft(index)
            return []
        if index == self.probe:
            self.probe, self.probe_after = None, now + self.lead
        if index not in self.polled:
            self.polled.add(index)
            if self.admitted.get(index) is not None:
                self.lead = min(self.lead * LENGTHEN, self._longest())
        wait = self.interval
        if fraction is not None and 0 < fraction < 1:
            wait = min(wait, max(self.tick, self.lead * (1 - fraction)))
        return [(now + wait, index)]

    def ended(self, index: int, now: float) -> list[Due]:
        """A poll found job ``index`` ended: the jobs to let in or probe, with their first polls."""
        admitted = self.admitted.pop(index, None)
        first = index not in self.polled
        self.polled.discard(index)
        probed = index == self.probe
        if probed:
            self.probe = None
        elif admitted is not None:
            self.shortest = min(self.shortest, now - admitted)
            if first:
                self.lead = max(self.tick, self.lead * SHORTEN)
            self.lead = min(self.lead, self._longest())
        self.ends.append(now)
        while self.ends and self.ends[0] < now - self.lead - self.interval:
            self.ends.popleft()
        due: list[Due] = []
        if self.parked and (probed or len(self.admitted) < WINDOW_SLACK * len(self.ends)):
            nxt = self.parked.popleft()
            self.admitted[nxt] = now
            due.append((now + self.lead, nxt))
        if self.parked and self.probe is None and now >= self.probe_after:
            self.probe = self.parked.popleft()
            self.admitted[self.probe] = now
            due.append((now, self.probe))
        return due

    def _longest(self) -> float:
        return self.shortest + self.interval if math.isfinite(self.shortest) else self.interval
