"""
The emulator's shared core: what every vendor module uses.

Settings, state, fault injection, the request journal and job timing; the HTTP plumbing every vendor shares
is in ``routes.py``, the emulated values in ``values.py``.

Each vendor module imports this one and only declares its routes and response shapes; everything that must
behave the same for every vendor lives here so the vendors cannot drift apart. This module never imports a
vendor module: ``app.py`` assembles them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_docjobs.emulator.values import Seeded
from airflow_docjobs.get_provider_info import CONN_TYPES

if TYPE_CHECKING:
    from starlette.requests import Request

# The vendors, in the order they are served; each name is also its URL prefix and its module's name.
VENDORS = CONN_TYPES
# Redacted from the journal for every vendor, so a test can see that a secret was sent but never its value.
SECRET_HEADERS = frozenset({"api-key", "authorization", "x-payment", "x-api-key"})


@dataclass
class EmulatorSettings:
    """
    Settings of one emulator app; ``/_emulator/config`` changes them while it runs.

    :param api_key: the secret every vendor accepts.
    :param processing_seconds: how long a job processes once it has a slot.
    :param processing_seconds_max: when above ``processing_seconds``, each job processes for its own time
        between the two, drawn uniformly from its key (the same job always takes the same time).
    :param result_ttl_seconds: how long Finovox keeps a result after processing.
    :param review_seconds: how long a myBiros human review takes after processing.
    :param concurrency: jobs processing at once per vendor, later ones queue; 0 means unlimited.
    :param frozen_clock: the clock only moves through ``Emulator.advance()``, not with wall time.
    :param journal_limit: the request journal keeps this many of the latest requests (the count keeps all).
    """

    api_key: str = "emulator"
    processing_seconds: float = 2.0
    processing_seconds_max: float = 0.0
    result_ttl_seconds: float = 3600.0
    review_seconds: float = 2.0
    concurrency: int = 0
    frozen_clock: bool = False
    journal_limit: int = 10_000

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a JSON override; raise ``ValueError`` naming the first bad field and change nothing."""
        kinds: dict[str, type[Any]] = {f.name: type(f.default) for f in dataclasses.fields(self)}
        checked: dict[str, Any] = {}
        for name, value in changes.items():
            kind = kinds.get(name)
            if kind is None:
                raise ValueError(f"unknown setting {name!r}; known: {', '.join(kinds)}")
            if kind is str or kind is bool:
                if not isinstance(value, kind):
                    raise ValueError(f"{name} must be a {'string' if kind is str else 'boolean'}")
            elif kind is int:
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"{name} must be a non-negative integer")
            elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{name} must be a non-negative number of seconds")
            else:
                value = float(value)
            checked[name] = value
        for name, value in checked.items():
            setattr(self, name, value)


@dataclass
class Fault:
    """
    Answer matching requests with an error (or slow them down) instead of the vendor's real behaviour.

    ``path`` is a substring of the path after the vendor prefix ("" matches any). With neither ``status``
    nor ``body`` the fault only sleeps ``delay`` seconds and then lets the real handler answer. ``times``
    counts matching requests before the fault is used up; ``None`` means forever.
    """

    vendor: str = "*"
    path: str = ""
    method: str | None = None
    status: int | None = None
    retry_after: str | None = None
    delay: float = 0.0
    body: str | None = None
    times: int | None = None
    hits: int = 0

    def used_up(self) -> bool:
        """Whether the fault has matched as many requests as ``times`` allows."""
        return self.times is not None and self.hits >= self.times

    def matches(self, vendor: str, path: str, method: str) -> bool:
        """Whether the fault applies to a request (vendor, path, method) and is not used up."""
        return (
            not self.used_up()
            and self.vendor in ("*", vendor)
            and self.path in path
            and (self.method is None or self.method.upper() == method)
        )

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        """A fault from its JSON description (``POST /_emulator/faults``); ``ValueError`` for a bad field."""
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        known = {f.name for f in dataclasses.fields(cls)} - {"hits"}
        if unknown := sorted(set(data) - known):
            raise ValueError(f"unknown fault fields {unknown}; known: {', '.join(sorted(known))}")
        fault = cls(**data)
        if fault.vendor not in (*VENDORS, "*"):
            raise ValueError(f"vendor must be one of {', '.join(VENDORS)} or '*'")
        if not isinstance(fault.path, str):
            raise ValueError("path must be a string")
        if fault.method is not None and not isinstance(fault.method, str):
            raise ValueError("method must be a string or null")
        if fault.status is not None and (
            isinstance(fault.status, bool)
            or not isinstance(fault.status, int)
            or not 100 <= fault.status <= 599
        ):
            raise ValueError("status must be an HTTP status code or null")
        if isinstance(fault.retry_after, int | float) and not isinstance(fault.retry_after, bool):
            fault.retry_after = str(fault.retry_after)
        if fault.retry_after is not None and not isinstance(fault.retry_after, str):
            raise ValueError("retry_after must be a header value or null")
        if isinstance(fault.delay, bool) or not isinstance(fault.delay, int | float) or fault.delay < 0:
            raise ValueError("delay must be a non-negative number of seconds")
        if fault.body is not None and not isinstance(fault.body, str):
            raise ValueError("body must be a string or null")
        if fault.times is not None and (
            isinstance(fault.times, bool) or not isinstance(fault.times, int) or fault.times < 1
        ):
            raise ValueError("times must be a positive integer or null")
        return fault

    def as_json(self) -> dict[str, Any]:
        """The fault as JSON, hit count included."""
        return dataclasses.asdict(self)


@dataclass
class Job:
    """
    One submitted piece of work.

    Its outcome is fixed at submit time by ``scenarios``; its state is a pure function of the clock, so
    polling never mutates anything and tests can jump through time. A job waits in its vendor's queue from
    ``submitted`` to ``started``, then processes for ``duration`` seconds.
    """

    key: str
    vendor: str
    kind: str
    api_key: str
    scenarios: frozenset[str]
    submitted: float  # Emulator.now() at submit
    started: float  # Emulator.now() when a processing slot is free: ``submitted`` unless queued
    issued_at: datetime  # wall clock at submit, for the timestamps vendors print
    duration: float  # processing_seconds at submit: later config changes do not move running jobs
    seed: str = ""  # what the emulated values derive from (see ``seed_of``)
    data: dict[str, Any] = field(default_factory=dict)
    answered_ended: float | None = None  # Emulator.now() when a poll first answered that it ended
    polls: int = 0  # polls that answered its state

    @property
    def failed(self) -> bool:
        """Whether the job was submitted with the ``fail`` scenario."""
        return "fail" in self.scenarios

    def queued(self, now: float) -> bool:
        """Whether the job still waits in its vendor's queue at ``now``."""
        return now < self.started

    def elapsed(self, now: float) -> float:
        """Seconds spent processing so far: zero while queued."""
        return max(0.0, now - self.started)

    @property
    def finished(self) -> float:
        """The emulator time at which processing ends."""
        return self.started + self.duration

    def done(self, now: float) -> bool:
        """Whether processing has ended at ``now`` (never for the ``never`` scenario)."""
        return "never" not in self.scenarios and now >= self.finished

    def since_done(self, now: float) -> float:
        """Seconds since processing ended (negative while it has not)."""
        return now - self.finished

    def progress(self, now: float) -> float:
        """The processed fraction at ``now``, from 0.0 to 1.0 (at most 0.99 until done)."""
        if self.done(now):
            return 1.0
        return min(0.99, self.elapsed(now) / self.duration) if self.duration > 0 else 0.0

    def expired(self, now: float, ttl: float) -> bool:
        """Whether the job is done and its result older than ``ttl`` seconds."""
        return self.done(now) and self.since_done(now) >= ttl

    def wall(self, moment: float) -> datetime:
        """The wall-clock time of ``moment`` on the emulator's clock, e.g. ``job.started``."""
        return self.issued_at + timedelta(seconds=moment - self.submitted)

    @property
    def values(self) -> Seeded:
        """The emulated values derived from the job's input (its ``seed``)."""
        return Seeded(self.seed)


class Emulator:
    """State of one emulator app, reachable as ``app.state.emulator``."""

    def __init__(self, settings: EmulatorSettings | None = None) -> None:
        self.settings = settings or EmulatorSettings()
        self.faults: list[Fault] = []
        self.requests: list[dict[str, Any]] = []
        self.jobs: dict[tuple[str, str], Job] = {}
        # Counted since the last reset. ``connections`` stays None unless a server counts them (see serving.py).
        self.request_count = 0
        self.job_count = 0
        self.connections: int | None = None
        # Per vendor, a min-heap of the times its busy processing slots free up (settings.concurrency).
        self._slots: dict[str, list[float]] = {}
        self._skew = 0.0
        self._frozen_at: float | None = None
        self.first_answered: float | None = None  # Emulator.now() of the first poll answered since reset

    def now(self) -> float:
        """The emulator's clock, in seconds: monotonic time plus ``advance()`` skew, or frozen."""
        # settings.frozen_clock may be flipped from anywhere (/_emulator/config): catch up here, so the
        # clock never jumps when it freezes or thaws.
        if self.settings.frozen_clock and self._frozen_at is None:
            # Up to the next 1/1024 s: a few bits only, so the sums of a test's steps such as 0.5 or 1.0
            # are exact and a job due at ``advance(1.0)`` is done then, not one rounding error later.
            self._frozen_at = math.ceil(time.monotonic() * 1024) / 1024
        elif not self.settings.frozen_clock and self._frozen_at is not None:
            self._skew += self._frozen_at - time.monotonic()
            self._frozen_at = None
        return (time.monotonic() if self._frozen_at is None else self._frozen_at) + self._skew

    def advance(self, seconds: float) -> None:
        """Move the emulator's clock forward, so tests need not sleep through processing or expiry."""
        self._skew += seconds

    def freeze(self) -> None:
        """Stop the clock where it is: from now on only ``advance()`` moves it."""
        self.settings.frozen_clock = True
        self.now()

    def reset(self) -> None:
        """Forget every job, fault and journalled request, and zero the counters."""
        # In place: tests may hold references to these lists.
        self.jobs.clear()
        self.faults.clear()
        self.requests.clear()
        self._slots.clear()
        self.first_answered = None
        self.reset_counters()

    def reset_counters(self) -> None:
        """Zero the request, job and connection counters."""
        self.request_count = self.job_count = 0
        if self.connections is not None:
            self.connections = 0

    def answered(self, job: Job, now: float) -> None:
        """Note that a poll answered ``job``'s state at ``now``: the first answer after it ended counts."""
        if self.first_answered is None:
            self.first_answered = now
        job.polls += 1
        if job.answered_ended is None and job.done(now):
            job.answered_ended = now

    def lags(self, late_after: float | None = None) -> dict[str, Any]:
        """
        How late clients learned that their jobs ended: the first poll answering it minus the job's end.

        A job that ended before the first poll answered since the last reset counts from that poll: no
        one was waiting yet (a batch still being submitted). ``jobs`` counts the jobs, ``found`` those a
        poll has answered ended; worst, 99th percentile and median in seconds, when the worst one ended,
        and the worst of those that ended after the first poll. ``vendor_span_s`` is the vendor's own
        time, from the first job's submit to the last one's end, and ``found_after_span_s`` how long after
        that the last job was found ended: with both, a client's run splits into the vendor's time and
        its own. With ``late_after``, ``late`` lists (up to 200 of) the jobs found later than that after
        their end, oldest first, and ``late_count`` how many: when each was submitted, started, ended and
        found (seconds from the first poll), and how many polls answered it: where a client's schedule
        found jobs late.
        """
        jobs = {id(job): job for job in self.jobs.values()}.values()
        since = self.first_answered or 0.0
        # Each job a poll found ended: its lag, when it was found; least late first (then earliest ended).
        found = sorted(
            (
                (j.answered_ended - max(j.finished, since), j.answered_ended, j)
                for j in jobs
                if j.answered_ended is not None
            ),
            key=lambda entry: (entry[0], entry[2].finished),
        )
        lags = [lag for lag, _, _ in found]
        middle = len(lags) // 2
        median = (lags[middle] + lags[~middle]) / 2 if lags else None
        first = min((j.submitted for j in jobs), default=None)
        last = max((j.finished for j in jobs), default=None)
        found_last = max((at for _, at, _ in found), default=None)
        return {
            "jobs": len(jobs),
            "found": len(lags),
            "worst_lag_s": lags[-1] if lags else None,
            # When the worst-found job ended, from the first poll (negative: before it, so its lag counts
            # from that poll): tells a job found late at the start from one lost in the tail.
            "worst_ended_s": found[-1][2].finished - since if found else None,
            "p99_lag_s": lags[int(0.99 * (len(lags) - 1))] if lags else None,
            # The worst of the jobs that ended after the first poll: a batch's backlog left out.
            "worst_lag_ended_later_s": max((lag for lag, _, j in found if j.finished > since), default=None),
            "median_lag_s": median,
            "vendor_span_s": last - first if first is not None and last is not None else None,
            "found_after_span_s": found_last - last if found_last is not None and last is not None else None,
            # How many jobs were answered by how many polls: where the requests per job went.
            "polls": dict(sorted(Counter(j.polls for j in jobs).items())),
        } | (self._late(found, since, late_after) if late_after is not None else {})

    @staticmethod
    def _late(found: list[tuple[float, float, Job]], since: float, after: float) -> dict[str, Any]:
        late = sorted(((at, j) for lag, at, j in found if lag > after), key=lambda entry: entry[1].submitted)
        return {
            "late_count": len(late),
            "late": [
                {
                    "submitted": round(j.submitted - since, 3),
                    "started": round(j.started - since, 3),
                    "ended": round(j.finished - since, 3),
                    "found": round(at - since, 3),
                    "polls": j.polls,
                }
                for at, j in late[:200]
            ],
        }

    def stats(self) -> dict[str, int]:
        """The connection (when counted), request and job counters."""
        counted = {"connections": self.connections} if self.connections is not None else {}
        return counted | {"requests": self.request_count, "jobs": self.job_count}

    def _start_time(self, vendor: str, now: float, duration: float) -> float:
        """When a job submitted ``now`` gets a processing slot, which it then holds for ``duration``."""
        limit = self.settings.concurrency
        if limit <= 0 or duration <= 0:  # a job that takes no time never holds a slot
            return now
        busy = self._slots.setdefault(vendor, [])
        start = now
        # Wait for the earliest slot to free up; a loop, as the limit may have been lowered since.
        while len(busy) >= limit:
            start = max(start, heapq.heappop(busy))
        heapq.heappush(busy, start + duration)
        return start

    def new_job(
        self,
        vendor: str,
        kind: str,
        key: str,
        scenarios: frozenset[str],
        seed: str = "",
        duration: float | None = None,
        **data: Any,
    ) -> Job:
        """Record a job; ``duration`` defaults to ``settings.processing_seconds``."""
        now = self.now()
        if duration is None:
            duration = self.settings.processing_seconds
            spread = self.settings.processing_seconds_max - duration
            if spread > 0:  # a fraction in [0, 1) from the key: the same job always takes the same time
                duration += spread * int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0x100000000
        duration = max(0.0, duration)
        job = Job(
            key=key,
            vendor=vendor,
            kind=kind,
            api_key=self.settings.api_key,
            scenarios=scenarios,
            submitted=now,
            started=self._start_time(vendor, now, duration),
            issued_at=datetime.now(UTC),
            duration=duration,
            seed=seed,
            data=data,
        )
        self.jobs[(vendor, key)] = job
        self.job_count += 1
        return job

    def alias(self, job: Job, key: str) -> None:
        """Make ``job`` reachable under a second key as well."""
        self.jobs[(job.vendor, key)] = job

    def get(self, vendor: str, key: str, kind: str | None = None) -> Job | None:
        """The job of ``vendor`` stored under ``key``, if any (and of ``kind``, when given)."""
        job = self.jobs.get((vendor, key))
        return job if job is not None and kind in (None, job.kind) else None

    def drop(self, job: Job) -> None:
        """Forget a job under every key it is stored under."""
        for key in [k for k, j in self.jobs.items() if j is job]:
            del self.jobs[key]

    def take_fault(self, vendor: str, path: str, method: str) -> Fault | None:
        """The first fault matching a request, counting the hit; ``None`` when none matches."""
        for fault in self.faults:
            if fault.matches(vendor, path, method):
                fault.hits += 1
                return fault
        return None

    def record(self, vendor: str, request: Request, authorized: bool) -> dict[str, Any]:
        """
        Add a request to the journal with its secret headers redacted, and count it; return its entry.

        A caller that left gets ``"client_gone"``: ``"mid-upload"`` (the vendor never got the whole request)
        or ``"before-answer"`` (the vendor took it, but its caller never read the answer: a worker killed
        mid-submit).
        """
        headers = {
            k.lower(): ("***" if k.lower() in SECRET_HEADERS else v) for k, v in request.headers.items()
        }
        entry = {
            "vendor": vendor,
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "authorized": authorized,
            "headers": headers,
            "at": round(time.time(), 3),
        }
        self.requests.append(entry)
        del self.requests[: -self.settings.journal_limit or None]
        self.request_count += 1
        return entry
