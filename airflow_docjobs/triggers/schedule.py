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
        self.shortest = math.inf  # fewest seconds a job took from its start to its (estimated) end
        # Admitted jobs still pending: when the vendor most likely started each (None: unknown, the first
        # window), when it was first to be polled, and when a poll last found it pending.
        self.started: dict[int, float | None] = {}
        self.first_due: dict[int, float] = {}
        self.checked: dict[int, float] = {}
        self.ends: deque[float] = deque()  # when admitted jobs were found ended, the last lead + interval s
        self.probes: set[int] = set()
        self.probe_after = start
        self.width = 1  # probes in flight at most
        self.first = [heapq.heappop(self.parked) for _ in range(min(len(order), FIRST_WINDOW))]
        count = max(1, len(self.first))
        for n, index in enumerate(self.first):
            self.started[index] = None
            self.first_due[index] = start + interval * n / count

    def initial(self) -> list[Due]:
        """The first window's polls: from the trigger's first poll time, spread over one interval."""
        return [(self.first_due[i], i) for i in self.first]

    def remaining(self) -> list[int]:
        """The jobs no poll is scheduled for (parked), oldest first."""
        return sorted(self.parked)

    def pending(self, index: int, now: float, fraction: float | None = None) -> list[Due]:
        """A poll found job ``index`` pending: when to ask again, and what else to ask."""
        if index in self.probes:  # the vendor has not got this far: park it again
            self.probes.discard(index)
            self.probe_after, self.width = now + self.lead, 1
            heapq.heappush(self.parked, index)
            return self._admit(now, now)
        if index not in self.checked and self.started.get(index) is not None:
            self.lead = min(self.lead * LENGTHEN, self._longest())
        self.checked[index] = now
        wait = self.interval
        if fraction is not None and 0 < fraction < 1:
            wait = min(wait, max(self.tick, self.lead * (1 - fraction)))
        return [(now + wait, index)]

    def ended(self, index: int, now: float) -> list[Due]:
        """A poll found job ``index`` ended: the jobs to let in or probe, with their first polls."""
        if index in self.probes:
            self.probes.discard(index)
            self.width = min(FIRST_WINDOW, 2 * self.width)
            return self._probe(now) + self._admit(now, now)
        started = self.started.pop(index, None)
        first_due = self.first_due.pop(index, now)
        checked = self.checked.pop(index, None)
        # When it most likely ended: where the schedule expected it, when its first poll found it ended;
        # half way from the last pending answer, when a re-check did.
        end = min(now, first_due) if checked is None else (checked + now) / 2
        if started is not None:
            self.shortest = min(self.shortest, end - started)
            if checked is None:
                self.lead = max(self.tick, self.lead * SHORTEN)
            self.lead = min(self.lead, self._longest())
        self.ends.append(now)
        due = self._probe(now) if not self.probes and now >= self.probe_after else []
        return due + self._admit(now, end)

    def _probe(self, now: float) -> list[Due]:
        due: list[Due] = []
        while self.parked and len(self.probes) < self.width:
            index = heapq.heappop(self.parked)
            self.probes.add(index)
            due.append((now, index))
        return due

    def _admit(self, now: float, freed: float) -> list[Due]:
        """
        Let parked jobs in up to the window (not while probing).

        The first most likely started when a slot was ``freed``, the others now; each is first polled
        ``lead`` seconds after its start.
        """
        while self.ends and self.ends[0] < now - self.lead - self.interval:
            self.ends.popleft()
        due: list[Due] = []
        while self.parked and not self.probes and len(self.started) < max(FIRST_WINDOW, len(self.ends)):
            index = heapq.heappop(self.parked)
            self.started[index] = freed
            self.first_due[index] = max(now, freed + self.lead)
            due.append((self.first_due[index], index))
            freed = now
        return due

    def _longest(self) -> float:
        return self.shortest + self.interval if math.isfinite(self.shortest) else self.interval
