"""
A batch's poll schedule: each job asked around when it can have ended, oldest first, none found late.

Pure bookkeeping on the event loop's clock: ``_Batch`` (``job.py``) sends the polls and tells the plan
what each answered; the plan says which jobs to ask next and when. The rules, and the measurements that
chose them, are in ``docs/design.md`` ("The poll schedule"). Nothing here knows a vendor: what it learns
comes from the answers (ended or not, and the share done when the vendor says).
"""

from __future__ import annotations

import heapq
import math
from collections import deque

# Jobs polled at first, before the batch has shown how many the vendor runs at once.
FIRST_WINDOW = 16
# The lead (admission to first poll) after a first poll that found its job ended / still pending: it
# settles where about one first poll in six finds its job pending (0.17 * ln 1.1 = 0.83 * -ln 0.98).
SHORTEN, LENGTHEN = 0.98, 1.1

Due = tuple[float, int]  # (when, job index): an entry of the batch's heap


class PollPlan:
    """
    Which jobs of a batch to poll, and when.

    * **Oldest first.** Jobs are taken in the batch's order (the submit's, which is the order the vendor
      accepted them); the rest are parked and cost nothing. A vendor runs its oldest jobs first, so a
      parked job is most likely one that has not started.
    * **A window as wide as the vendor's work.** At first :data:`FIRST_WINDOW` jobs are polled, one
      interval after the trigger starts (the sensor has just polled), spread over that interval. Then the
      window holds as many jobs as were found ended in the last ``lead + interval`` seconds (at least
      :data:`FIRST_WINDOW`): at the vendor's pace that is a little more than it runs at once, so the
      window grows until the batch ends as fast as the vendor works. Each job found ended lets the next
      parked ones in, up to the window.
    * **Probes find what ended unseen.** After a job is found ended, the next parked job is polled at
      once (a probe). Ended, it lets two more probes go, up to :data:`FIRST_WINDOW` at a time (the jobs
      the trigger started behind: a batch submitted faster than the vendor works, or a window too
      narrow); pending, it is parked again and no probe goes for ``lead`` seconds. No job is let in while
      probes run.
    * **First poll after ``lead`` seconds.** A job let in is first polled ``lead`` seconds later. The lead
      starts at the poll interval and follows what first polls find: 10 % longer after one that found
      its job pending, 2 % shorter after one that found it ended, and never more than the shortest time a
      job took from admission to being found ended plus one interval.
    * **Re-checks bounded by the interval.** A job found pending is asked again after the poll interval,
      or sooner when the vendor says how much is done: after ``lead * (1 - fraction)``, at least a tick.
    """

    def __init__(self, order: list[int], start: float, interval: float, tick: float) -> None:
        self.interval, self.tick = interval, tick
        self.parked = sorted(order)  # a heap: the oldest parked job first, also after a probe comes back
        self.lead = interval
        self.shortest = math.inf  # fewest seconds from admission to found ended, over the learned jobs
        # Admitted jobs still pending: when each was let in (None for the first window: unknown start).
        self.admitted: dict[int, float | None] = {}
        self.polled: set[int] = set()  # admitted jobs asked at least once
        self.ends: deque[float] = deque()  # when admitted jobs were found ended, the last lead + interval s
        self.probes: set[int] = set()
        self.probe_after = start
        self.width = 1  # probes in flight at most
        self.first = [heapq.heappop(self.parked) for _ in range(min(len(order), FIRST_WINDOW))]
        for index in self.first:
            self.admitted[index] = None
        self.start = start

    def initial(self) -> list[Due]:
        """The first window's polls: from ``start``, spread over one interval."""
        count = max(1, len(self.first))
        return [(self.start + self.interval * n / count, i) for n, i in enumerate(self.first)]

    def remaining(self) -> list[int]:
        """The jobs no poll is scheduled for (parked), oldest first."""
        return sorted(self.parked)

    def pending(self, index: int, now: float, fraction: float | None = None) -> list[Due]:
        """A poll found job ``index`` pending: when to ask again, and what else to ask."""
        if index in self.probes:  # the vendor has not got this far: park it again
            self.probes.discard(index)
            self.probe_after, self.width = now + self.lead, 1
            heapq.heappush(self.parked, index)
            return self._admit(now)
        if index not in self.polled and self.admitted.get(index) is not None:
            self.lead = min(self.lead * LENGTHEN, self._longest())
        self.polled.add(index)
        wait = self.interval
        if fraction is not None and 0 < fraction < 1:
            wait = min(wait, max(self.tick, self.lead * (1 - fraction)))
        return [(now + wait, index)]

    def ended(self, index: int, now: float) -> list[Due]:
        """A poll found job ``index`` ended: the jobs to let in or probe, with their first polls."""
        due: list[Due] = []
        if index in self.probes:
            self.probes.discard(index)
            self.width = min(FIRST_WINDOW, 2 * self.width)
            return self._probe(now) + self._admit(now)
        admitted = self.admitted.pop(index, None)
        if admitted is not None:
            self.shortest = min(self.shortest, now - admitted)
            if index not in self.polled:
                self.lead = max(self.tick, self.lead * SHORTEN)
            self.lead = min(self.lead, self._longest())
        self.polled.discard(index)
        self.ends.append(now)
        if not self.probes and now >= self.probe_after:
            due += self._probe(now)
        return due + self._admit(now)

    def _probe(self, now: float) -> list[Due]:
        due: list[Due] = []
        while self.parked and len(self.probes) < self.width:
            index = heapq.heappop(self.parked)
            self.probes.add(index)
            due.append((now, index))
        return due

    def _admit(self, now: float) -> list[Due]:
        """Let parked jobs in up to the window, first polled ``lead`` seconds from now (not while probing)."""
        while self.ends and self.ends[0] < now - self.lead - self.interval:
            self.ends.popleft()
        due: list[Due] = []
        while self.parked and not self.probes and len(self.admitted) < max(FIRST_WINDOW, len(self.ends)):
            index = heapq.heappop(self.parked)
            self.admitted[index] = now
            due.append((now + self.lead, index))
        return due

    def _longest(self) -> float:
        return self.shortest + self.interval if math.isfinite(self.shortest) else self.interval
