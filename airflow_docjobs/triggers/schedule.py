"""
A batch's poll schedule: each job asked around when it can have ended, oldest first, none found late.

Pure bookkeeping on the event loop's clock: ``_Batch`` (``job.py``) sends the polls and tells the plan
what each answered; the plan says which jobs to ask next and when. The rules, and the measurements that
chose them, are in ``docs/design.md`` ("The poll schedule"). Nothing here knows a vendor: what it learns
comes from the answers (ended or not, and the share done when the vendor says).
"""

from __future__ import annotations

import bisect
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

# Probes found ended in a row (1, 3, 7 ... jobs past the oldest parked) that show a burst: the window's
# jobs older than the last are polled at once too, not when their re-check is due.
BURST = 7
# While no job of the window has ended for ``lead`` seconds, the oldest pending one is asked this many
# times an interval: the first to end, at a vendor that runs its oldest first (a few requests a batch).
WATCH = 4
# The vendor ends its jobs in the order it took them until this share of the jobs found ended (a moving
# average over the last ORDER_MEMORY) were still running when a younger one had ended, and again once the
# share is back under half of it: the plan then searches for ends, not predicts them (PollPlan, "In order").
DISORDER, ORDER_MEMORY = 0.1, 64

Due = tuple[float, int]  # (when, job index): an entry of the batch's heap


class PollPlan:
    """
    Which jobs of a batch to poll, and when.

    * **Oldest first.** Jobs are taken in the batch's order (the submit's, which is the order the vendor
      accepted them); the rest are parked and cost nothing. A vendor runs its oldest jobs first, so a
      parked job is most likely one that has not started.
    * **A window as wide as the vendor's work.** At first :data:`FIRST_WINDOW` jobs are polled, at once,
      one interval after the sensor's poll round began (``start``: the sensor has just polled). Then the
      window holds :data:`WIDEN` times the jobs found ended in the last ``lead`` seconds (at least one):
      at the vendor's pace that is a quarter more than it runs at once, so the
      window grows until the batch ends as fast as the vendor works. Each job found ended lets the next
      parked ones in, up to the window; the first of them started when that job ended (its expected
      time if its first poll found it ended, else half way from its last pending answer). When the
      window holds more than that, the youngest job found pending is parked again.
    * **A search finds what ended unseen.** After a job of the window is found ended, parked jobs are
      probed one at a time, galloping: the oldest, then 1, 3, 7, 15 ... further on. A probe found ended
      means every older parked job most likely ended too: they are swept (polled at once, outside the
      window, which they do not widen); from :data:`BURST` jobs on, the window's older jobs are polled at
      once too. A probe found pending bounds the search, which halves towards the oldest parked job
      until it finds the boundary; then, if nothing ended past the window, no search starts for
      ``min(lead, interval)``. So 10,000 jobs that
      ended together cost about 28 probes in a row, and their polls. No job is let in while a search
      runs; a probe whose poll fails is asked again later, with the swept, and the search goes on.
    * **First poll after ``lead`` seconds.** A job let in is first polled ``lead`` seconds later. The lead
      starts at the poll interval and follows what first polls find: 10 % longer after one that found
      its job pending, 2 % shorter after one that found it ended, and never more than the shortest time a
      job took from admission to being found ended plus one interval.
    * **In order: search, do not predict.** A vendor that ends its jobs in the order it took them (it
      runs its oldest first, for about the same time each) is found best by searching. The window then
      holds the oldest pending job, watched :data:`WATCH` times an interval and asked as soon as it is
      let in (``lead`` 0); each of its ends starts a search that sweeps every parked job that ended.
      While jobs end, a search starts again :data:`WATCH` times an interval whatever the window does,
      and one that stopped at the oldest parked job starts past it the next time. The sensor hands the
      jobs over in the order the vendor took them when the submit recorded it; a job out of the batch's
      order (references from elsewhere, submits answered out of turn) runs late, a whole duration
      when it missed its turn, and a job younger than it ending first shows it. It stays in the window,
      asked within an interval, and the job watched is the oldest not known to run late. Jobs found
      pending once a younger job had been found ended (by a poll sent after that one) count against the
      order: from a share of :data:`DISORDER` of the jobs found ended (a moving average over the last
      :data:`ORDER_MEMORY`), the plan predicts as above (durations vary) until the share is back under
      half of it. It starts searching; the lead and the shortest duration learn nothing from a search.
    * **Re-checks bounded by the interval.** A job found pending is asked again after the poll interval,
      or sooner when the vendor says how much is done: when its pace since it was first seen partly
      done says it will be done (at least a tick), else after ``lead * (1 - fraction)`` (at least
      ``interval / WATCH``). A job the vendor says has not started (a share done of 0) cannot end
      before the shortest time a job has taken: it is asked again after that, if longer than the
      interval. While no job of the window has ended for ``lead`` seconds, the oldest pending one is
      asked :data:`WATCH` times an interval: it ends first, and starts the search for the rest. So is
      the job where a burst stopped (a search that swept more than four windows), from a quarter interval
      after it is let in until a job of the window ends: the next burst most likely ends with it.
    """

    def __init__(self, order: list[int], start: float, interval: float, tick: float) -> None:
        self.interval, self.tick = interval, tick
        # The parked jobs, youngest first: the oldest is popped from the end, a probe is found by offset.
        self.parked = sorted(order, reverse=True)
        self.lead = interval
        self.shortest = math.inf  # fewest seconds a job took from its start to its (estimated) end
        # Admitted jobs still pending: when the vendor most likely started each (None: unknown, the first
        # window), when it was first to be polled, when a poll last found it pending (and when it was first
        # seen partly done, how far).
        self.started: dict[int, float | None] = {}
        self.first_due: dict[int, float] = {}
        self.checked: dict[int, tuple[float, tuple[float, float] | None]] = {}
        self.ends: deque[float] = deque()  # when admitted jobs were found ended, the last lead seconds
        self.swept: set[int] = set()  # polled at once: older than a probe found ended
        self.probe: int | None = None  # the parked job a search is asking about
        self.stopped_at: int | None = None  # the probe found pending where the last search stopped
        self.stride = 0  # the next probe's offset among the parked jobs, doubling while probes find ends
        self.bound: int | None = None  # the youngest probe this search found pending
        self.hurried = False  # whether this search brought the window's polls forward
        self.next: dict[int, float] = {}  # when each job with a poll scheduled is due (see current())
        self.watched: int | None = None  # the oldest job of the window (see _oldest)
        self.any_ended = False  # whether a job of the window was found ended yet
        # Whether the last search swept a burst and found where it stops: until a job of the window ends,
        # the window's oldest is watched (WATCH), as the next burst most likely ends with it.
        self.burst = False
        self.probe_after = start
        # Whether the vendor ends jobs in order (see _ordered): the share of jobs found ended that were found
        # running after a younger one ended (the jobs counted, until they end), the youngest job found ended
        # and when its poll was sent, when the last job was found ended.
        self.disorder = 0.0
        self.searching = True  # see _ordered
        self.out_of_order: set[int] = set()
        self.youngest_ended, self.youngest_sent = -1, -math.inf
        self.last_ended = -math.inf
        self.first = [self.parked.pop() for _ in range(min(len(order), FIRST_WINDOW))]
        for index in self.first:
            self.started[index] = None
            self.first_due[index] = start

    def initial(self) -> list[Due]:
        """The first window's polls, all at the trigger's first poll time."""
        return [self._at(self.first_due[i], i) for i in self.first]

    def remaining(self) -> list[int]:
        """The jobs no poll is scheduled for (parked), oldest first."""
        return self.parked[::-1]

    def pending(self, index: int, now: float, fraction: float | None = None) -> list[Due]:
        """A poll found job ``index`` pending: when to ask again, and what else to ask."""
        if index < self.youngest_ended and now > self.youngest_sent and index not in self.out_of_order:
            self.out_of_order.add(index)  # running, asked after a younger job was found ended
            self.disorder += 1 / ORDER_MEMORY
        if index == self.probe:  # the vendor has not got this far: the search looks nearer
            self.probe, self.bound, self.stopped_at = None, index, index
            self._park(index)
            return self._search(now)
        if index in self.swept:  # older than a job that ended: running, most likely; it joins the window
            self.swept.discard(index)
            self.started[index], self.first_due[index] = None, now
            self.watched = None if self.watched is None else min(self.watched, index)
        elif len(self.started) > self._window(now) and index == max(self.started):
            # Wider than the vendor's pace (the first window, or a pace that slowed): the youngest job
            # polled has most likely not started; it waits its turn again, parked.
            del self.started[index], self.first_due[index]
            self.checked.pop(index, None)
            self._park(index)
            return []
        last = self.checked.get(index)
        if last is None and self.started.get(index) is not None and not self._ordered():
            self.lead = min(self.lead * LENGTHEN, self._longest())
        seen = last[1] if last is not None else None  # when it was first seen partly done, and how far
        if seen is None and fraction:
            seen = (now, fraction)
        self.checked[index] = (now, seen)
        # A search's window holds jobs the vendor runs late: each is asked again within an interval (less
        # the tick its poll may wait for), as nothing else looks for its end.
        wait = self.interval - self.tick if self._ordered() else self.interval
        if fraction == 0 and math.isfinite(self.shortest):  # not started: it cannot end sooner than that
            wait = max(wait, self.shortest)
        elif seen is not None and fraction is not None and 0 < fraction < 1:
            if fraction > seen[1]:  # done when its pace since then says
                left = max(self.tick, (1 - fraction) * (now - seen[0]) / (fraction - seen[1]))
            else:  # no pace yet
                left = max(self.interval / WATCH, self._lead() * (1 - fraction))
            wait = min(wait, left)
        if self._watching(index):
            wait = min(wait, self.interval / WATCH)
        return [self._at(now + wait, index)]

    def ended(self, index: int, now: float) -> list[Due]:
        """A poll found job ``index`` ended: the jobs to let in or probe, with their first polls."""
        self.disorder *= 1 - 1 / ORDER_MEMORY
        self.out_of_order.discard(index)
        self.last_ended = now
        if index > self.youngest_ended:
            self.youngest_ended, self.youngest_sent = index, now
        if index == self.probe:  # every older parked job most likely ended too: sweep them
            self.probe, self.stride = None, 2 * self.stride + 1
            due = []
            if self.stride >= BURST and not self.hurried:  # a burst: the window's older jobs too, at once
                self.hurried = True
                due += [self._at(now, i) for i in self.started if i < index and self.next.get(i, now) > now]
            while self.parked and self.parked[-1] < index:
                older = self.parked.pop()
                self.swept.add(older)
                due.append(self._at(now, older))
            return due + self._search(now)
        if index in self.swept:
            self.swept.discard(index)
            return self._admit(now, now)
        started = self.started.pop(index, None)
        first_due = self.first_due.pop(index, now)
        checked = self.checked.pop(index, None)
        # When it most likely ended: where the schedule expected it, when its first poll found it ended;
        # half way from the last pending answer, when a re-check did.
        end = min(now, first_due) if checked is None else (checked[0] + now) / 2
        if started is not None and not self._ordered():  # a search's first polls time nothing
            self.shortest = min(self.shortest, end - started)
            if checked is None:
                self.lead = max(self.tick, self.lead * SHORTEN)
            self.lead = min(self.lead, self._longest())
        self.ends.append(now)
        self.any_ended, self.burst = True, False
        if self.probe is None and now >= self.probe_after:
            self.hurried = False
            return self._search(now, end)
        return self._admit(now, end)

    def failed(self, index: int, now: float, retry: float) -> list[Due]:
        """
        A poll of job ``index`` failed (transient, after the hook's retries): it is asked at ``retry``.

        The job watched is asked again within a watch whatever the back-off: it alone finds the next ends
        (one poll a watch, as a circuit breaker's half-open probe), while the others back off.
        """
        if self.started and self._watching(index):
            retry = min(retry, now + self.interval / WATCH)
        if index != self.probe:
            return [self._at(retry, index)]
        # The search goes on without it (a vendor in trouble fails the search in the end, as it fails any
        # poll): it is asked again at ``retry``, as one of the swept.
        self.probe = None
        self.swept.add(index)
        return [self._at(retry, index), *self._search(now)]

    def _search(self, now: float, freed: float | None = None) -> list[Due]:
        """The next probe, or, when the search is over, the jobs to let in (see :meth:`_admit`)."""
        below = len(self.parked)
        if self.bound is not None:  # the parked jobs older than the pending probe
            below -= bisect.bisect_right(self.parked, -self.bound, key=_negative)
        if below == 0:
            if self.bound is not None and self.stride == 0:  # nothing ended past the window: not for a while
                self.probe_after = now + min(self._lead(), self.interval)
            self.burst = self.bound is not None and self.stride >= max(BURST, 4 * self._window(now))
            self.bound, self.stride = None, 0
            due = self._admit(now, now if freed is None else freed)
            if self._ordered() and self.parked and now - self.last_ended < self.interval:
                # Jobs are ending: the next search a watch later, whether or not the oldest ends by then.
                self.probe = self.parked.pop()
                due.append(self._at(now + self.interval / WATCH, self.probe))
            return due
        offset = min(self.stride, below - 1) if self.bound is None else below // 2
        if offset == 0 and below > 1 and self.parked[-1] == self.stopped_at:
            # The last search stopped at the oldest parked job: this one starts past it, in case the vendor
            # took it out of the batch's order and runs it late (if the next has ended, it is swept).
            offset = 1
        self.probe = self.parked.pop(len(self.parked) - 1 - offset)
        return [self._at(now, self.probe)]

    def _watching(self, index: int) -> bool:
        """Whether job ``index`` is watched: asked :data:`WATCH` times an interval, as it tells first."""
        return (self._ordered() or not self.ends or self.burst) and index == self._oldest()

    def _oldest(self) -> int:
        """The oldest job of the window, looked for again only once the last one left it."""
        if self.watched not in self.started:
            self.watched = min(self.started)
        elif self._ordered() and self.watched < self.youngest_ended:
            # Searching, a job younger than it has ended: it runs late and tells nothing of the others.
            self.watched = min((i for i in self.started if i > self.youngest_ended), default=self.watched)
        return self.watched

    def current(self, due: float, index: int) -> bool:
        """Whether a poll taken from the heap is the job's latest (one brought forward leaves a stale one)."""
        if self.next.get(index) != due:
            return False
        del self.next[index]
        return True

    def _at(self, when: float, index: int) -> Due:
        self.next[index] = when
        return (when, index)

    def _park(self, index: int) -> None:
        bisect.insort(self.parked, index, key=_negative)

    def _admit(self, now: float, freed: float) -> list[Due]:
        """
        Let parked jobs in up to the window (not while a search runs).

        The first most likely started when a slot was ``freed``, the others now; each is first polled
        ``lead`` seconds after its start.
        """
        due: list[Due] = []
        while self.parked and self.probe is None and len(self.started) < self._window(now):
            index = self.parked.pop()
            self.started[index] = freed
            self.first_due[index] = max(now, freed + self._lead())
            if self.burst and len(self.started) == 1:  # where a burst stopped: watched (see pending)
                self.first_due[index] = min(self.first_due[index], now + self.interval / WATCH)
            due.append(self._at(self.first_due[index], index))
            freed = now
        return due

    def _window(self, now: float) -> float:
        """How many jobs to poll: the first window until one ended, then the vendor's pace (at least one)."""
        while self.ends and self.ends[0] < now - self._lead():
            self.ends.popleft()
        if not self.any_ended:
            return FIRST_WINDOW
        if self._ordered():  # the oldest job not known to run late, and those that do (see _oldest)
            return 1.0 + sum(1 for i in self.started if i < self.youngest_ended)
        return max(1.0, WIDEN * len(self.ends))

    def _ordered(self) -> bool:
        """Whether the vendor ends its jobs in the order it took them: the plan searches (class doc)."""
        if self.disorder >= DISORDER:
            self.searching = False
        elif self.disorder < DISORDER / 2:
            self.searching = True
        return self.searching

    def _lead(self) -> float:
        return 0.0 if self._ordered() else self.lead

    def _longest(self) -> float:
        return self.shortest + self.interval if math.isfinite(self.shortest) else self.interval


def _negative(index: int) -> int:
    return -index
