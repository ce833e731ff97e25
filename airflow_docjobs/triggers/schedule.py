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

# The window holds this many times the jobs found ended in the last ``lead`` seconds (about as many as
# the vendor runs at once): 1.0 misses jobs the vendor started unseen, 1.5 polls queued ones (docs/design.md).
WIDEN = 1.25

Due = tuple[float, int]  # (when, job index): an entry of the batch's heap


class PollPlan:
    """
    Which jobs of a batch to poll, and when.

    * **Oldest first.** Jobs are taken in the batch's order (the submit's, which is the order the vendor
      accepted them); the rest are parked and cost nothing. A vendor runs its oldest jobs first, so a
      parked job is most likely one that has not started.
    * **A window as wide as the vendor's work.** At first :data:`FIRST_WINDOW` jobs are polled, one
      interval after the trigger starts (the sensor has just polled), spread over that interval. Then the
      window holds :data:`WIDEN` times the jobs found ended in the last ``lead`` seconds (at least one):
      at the vendor's pace that is a quarter more than it runs at once, so the
      window grows until the batch ends as fast as the vendor works. Each job found ended lets the next
      parked ones in, up to the window; the first of them started when that job ended (its expected
      time if its first poll found it ended, else half way from its last pending answer). When the
      window holds more than that, the youngest job found pending is parked again.
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
      A job the vendor says has not started (a share done of 0) cannot end before the shortest time a
      job has taken: it is asked again after that, if longer than the interval.
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
        self.ends: deque[float] = deque()  # when admitted jobs were found ended, the last lead seconds
        self.probes: set[int] = set()
        self.any_ended = False  # whether a job of the window was found ended yet
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
        if len(self.started) > self._window(now) and index == max(self.started):
            # Wider than the vendor's pace (the first window, or a pace that slowed): the youngest job
            # polled has most likely not started; it waits its turn again, parked.
            del self.started[index], self.first_due[index]
            self.checked.pop(index, None)
            heapq.heappush(self.parked, index)
            return []
        if index not in self.checked and self.started.get(index) is not None:
            self.lead = min(self.lead * LENGTHEN, self._longest())
        self.checked[index] = now
        wait = self.interval
        if fraction == 0 and math.isfinite(self.shortest):  # not started: it cannot end sooner than that
            wait = max(wait, self.shortest)
        elif fraction is not None and 0 < fraction < 1:
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
        self.any_ended = True
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
        due: list[Due] = []
        while self.parked and not self.probes and len(self.started) < self._window(now):
            index = heapq.heappop(self.parked)
            self.started[index] = freed
            self.first_due[index] = max(now, freed + self.lead)
            due.append((self.first_due[index], index))
            freed = now
        return due

    def _window(self, now: float) -> float:
        """How many jobs to poll: the first window until one ended, then the vendor's pace (at least one)."""
        while self.ends and self.ends[0] < now - self.lead:
            self.ends.popleft()
        return max(1.0, WIDEN * len(self.ends)) if self.any_ended else FIRST_WINDOW

    def _longest(self) -> float:
        return self.shortest + self.interval if math.isfinite(self.shortest) else self.interval
