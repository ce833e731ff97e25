"""One trigger for every vendor: poll one job, or a whole batch, through one shared pool until they end."""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import json
import math
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.providers.common.compat.module_loading import import_string
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_docjobs.exceptions import DocJobsError, VendorAuthError, VendorTransientError
from airflow_docjobs.hooks.base import DocJobsHook
from airflow_docjobs.hooks.calls import JobStatus
from airflow_docjobs.hooks.retries import BACKOFF_SLEEP
from airflow_docjobs.results import (
    JOB_LISTS,
    ResultsStore,
    fernet,
    job_key,
    landed_record,
    read_json,
    seal,
    secret_fernet,
    unseal,
    write_json,
)
from airflow_docjobs.triggers.schedule import PollPlan

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Mapping, Sequence

# The closed set of statuses a DocJobTrigger event carries back to the sensor.
EVENT_STATUSES = frozenset({"success", "failed", "error", "timeout"})
MAX_BACKOFF = 300.0
# Polls of one batch in flight at once: the pool and the vendor see a steady trickle, never a burst.
MAX_IN_FLIGHT = 16
# Polls are due on a grid of this many seconds (or a tenth of the poll interval, if shorter).
POLL_TICK = 0.1
# A packed job list longer than this goes to the results store: trigger rows stay small whatever the batch.
INLINE_LIMIT = 4096


class DocJobTrigger(BaseTrigger):
    """
    Poll one vendor job or a batch every ``poll_interval`` seconds until all end or ``deadline`` passes.

    A single job is given as ``job``, a batch as ``jobs``; references that hold a secret token come
    ``sealed`` (see :meth:`job_kwargs`).

    Each result is written to the results store (``results``) the moment it is fetched, with its state;
    a trigger re-created after a triggerer restart skips what is already landed, so nothing is fetched
    twice and nothing is lost. The events are small and closed (:data:`EVENT_STATUSES`); they never carry a
    result, since the triggerer logs event payloads and results hold personal data.

    The first poll waits one interval (the sensor has just polled before deferring; a single job's, up to
    a tenth of an interval more, so that jobs deferred together do not all poll at once; a batch's, from
    when the sensor's round began, ``polled_at``), and a batch's polls follow its plan (``schedule.py``),
    at most :data:`MAX_IN_FLIGHT` at a time; no event comes within an interval of the start. Every
    trigger of one connection in a triggerer shares one pooled client (``hooks/transport.py``), and a
    ``429`` from the vendor pauses all of them. Transient poll failures (already retried by the hook) are
    counted; the wait ends after ``max_consecutive_failures`` in a row, and a healthy poll resets the
    count. A permanent error about one job of a batch lands that job as failed; a refused key ends the
    wait.

    :param hook_class: import path of a :class:`~airflow_docjobs.hooks.base.DocJobsHook` subclass.
    :param conn_id: Airflow connection id.
    :param deadline: ISO 8601 time after which the wait ends as a timeout; absolute, so a restarted
        triggerer keeps it.
    :param poll_interval: seconds between two polls of one job.
    :param job: one job reference, as the hook's ``job(...)`` builds it (single mode).
    :param jobs: a batch, as :meth:`pack` builds it (list mode).
    :param sealed: ``{"job": ...}`` or ``{"jobs": ...}`` encrypted with Airflow's Fernet key (:meth:`job_kwargs`).
    :param results: the results store, as ``ResultsStore.spec()`` gives it.
    :param max_consecutive_failures: transient poll failures in a row that end the wait.
    :param polled_at: ISO 8601 time the sensor's poll round before deferring began (a batch's): its first
        window is polled one interval after it, not one interval after the trigger starts, so a job that
        ended just after that round is found within an interval; the event still waits one interval
        from the trigger's start (see ``docs/design.md``, the stale-executor-event race).
    """

    def __init__(
        self,
        *,
        hook_class: str,
        conn_id: str,
        deadline: str,
        poll_interval: float,
        job: dict[str, Any] | None = None,
        jobs: dict[str, Any] | None = None,
        sealed: str | None = None,
        results: dict[str, str] | None = None,
        max_consecutive_failures: int = 10,
        polled_at: str | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow leaves BaseTrigger.__init__ unannotated
        if sum(given is not None for given in (job, jobs, sealed)) != 1:
            raise TypeError("give exactly one of job (one reference), jobs (a packed batch) or sealed")
        json.dumps([job, jobs, results])  # fail at defer time, not in the triggerer, if not JSON
        self.hook_class = hook_class
        self.conn_id = conn_id
        self.deadline = _moment(deadline).isoformat()
        self.poll_interval = float(poll_interval)
        self.job = dict(job) if job is not None else None
        self.jobs = jobs
        self.sealed = sealed
        self.results = dict(results) if results else None
        self.max_consecutive_failures = int(max_consecutive_failures)
        self.polled_at = _moment(polled_at).isoformat() if polled_at else None
        hook_type = import_string(hook_class)
        if not (isinstance(hook_type, type) and issubclass(hook_type, DocJobsHook)):
            raise TypeError(f"hook_class must name a DocJobsHook subclass, got {hook_class!r}")
        self._hook_type: type[DocJobsHook] = hook_type

    @classmethod
    def job_kwargs(
        cls,
        hook_class: type[DocJobsHook],
        conn_id: str,
        *,
        job: Mapping[str, Any] | None = None,
        jobs: Sequence[Mapping[str, Any]] | None = None,
        store: ResultsStore | None = None,
    ) -> dict[str, Any]:
        """
        The kwargs that give the trigger its job references: ``job``, ``jobs`` (packed), or ``sealed``.

        Airflow 3.3 stores the trigger kwargs a Task SDK worker sends as plain JSON (``docs/design.md``), so
        references that hold a secret token (Finovox's) are encrypted with Airflow's Fernet key here, in the
        worker; a missing or invalid ``[core] fernet_key`` fails the defer, not the triggerer.
        """
        secret = bool(hook_class.secret_job_keys)
        if secret:  # before pack() writes a large batch's job list with that key
            secret_fernet(hook_class.vendor, conn_id)
        refs = {"job": dict(job)} if job is not None else {"jobs": cls.pack(jobs or [], store)}
        return {"sealed": seal(refs, hook_class.vendor, conn_id)} if secret else refs

    def references(self) -> tuple[JobList, bool]:
        """The job references, unsealed and unpacked (a spilled batch is read back), and whether single."""
        refs: dict[str, Any] = (
            unseal(self.sealed) if self.sealed is not None else {"job": self.job, "jobs": self.jobs}
        )
        if refs.get("job") is not None:
            return JobList(dict(refs["job"]), (), ()), True
        return self.unpack(refs["jobs"]), False

    @staticmethod
    def pack(jobs: Sequence[Mapping[str, Any]], store: ResultsStore | None = None) -> dict[str, Any]:
        """
        A batch in a few bytes per job: the fields every job shares once, the rest as rows.

        Past :data:`INLINE_LIMIT` the rest goes to the results store as one column per field (a triggerer
        reads 100,000 jobs as a few lists of strings, not a list and a dict per job), encrypted with
        Airflow's Fernet key (a Finovox token grants access to a result).
        """
        keys = list(jobs[0]) if jobs else []
        common = {k: jobs[0][k] for k in keys if all(job.get(k) == jobs[0][k] for job in jobs)}
        varying = [k for k in keys if k not in common]
        packed: dict[str, Any] = {
            "common": common,
            "keys": varying,
            "rows": [[job.get(k) for k in varying] for job in jobs],
        }
        if store is None or len(json.dumps(packed["rows"])) <= INLINE_LIMIT:
            return packed
        text = json.dumps({"columns": [[job.get(k) for job in jobs] for k in varying], "count": len(jobs)})
        uri = store.named(JOB_LISTS, f"{job_key({'columns': text})}.json")
        write_json(uri, {"fernet": fernet().encrypt(text.encode()).decode()})
        return {"common": common, "keys": varying, "columns_uri": uri, "count": len(jobs)}

    @staticmethod
    def unpack(packed: Mapping[str, Any]) -> JobList:
        """
        The job references of a packed batch (reads the store when they were spilled there).

        Reads the rows of a batch packed by an earlier version (``rows_uri``) too.
        """
        common, keys = dict(packed["common"]), list(packed["keys"])
        if "columns_uri" in packed:
            token = read_json(packed["columns_uri"])["fernet"]
            spilled = json.loads(fernet().decrypt(token.encode()))
            return JobList(common, keys, spilled["columns"], spilled["count"])
        rows = packed.get("rows")
        if rows is None:
            token = read_json(packed["rows_uri"])["fernet"]
            rows = json.loads(fernet().decrypt(token.encode()))
        columns = [list(column) for column in zip(*rows, strict=True)] if keys else []
        return JobList(common, keys, columns, len(rows))

    @property
    def log(self) -> Any:
        """
        One logger for every instance of the class.

        ``LoggingMixin`` makes a logger per instance, some 15 objects the garbage collector walks for each
        waiting trigger; Airflow's triggerer routes a trigger's lines to its task's log by context, not by
        logger (``bind_log_contextvars`` in ``TriggerRunner.run_trigger``).
        """
        return type(self).logger()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The trigger's class path and keyword arguments, as Airflow stores them."""
        kwargs: dict[str, Any] = {
            "hook_class": self.hook_class,
            "conn_id": self.conn_id,
            "deadline": self.deadline,
            "poll_interval": self.poll_interval,
            "results": self.results,
            "max_consecutive_failures": self.max_consecutive_failures,
        }
        if self.polled_at is not None:
            kwargs["polled_at"] = self.polled_at
        if self.sealed is not None:
            kwargs["sealed"] = self.sealed
        else:
            kwargs |= {"job": self.job} if self.job is not None else {"jobs": self.jobs}
        return f"{type(self).__module__}.{type(self).__qualname__}", kwargs

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until every job ended or the deadline passed; yield one small event."""
        hook = self._hook_type(**{self._hook_type.conn_name_attr: self.conn_id})
        try:
            event = await _Batch(self, hook).run()
        finally:  # as ``async with hook``, without holding its bound __aexit__ while the jobs wait
            await hook.aclose()
        yield TriggerEvent(event)  # type: ignore[no-untyped-call]  # TriggerEvent.__init__ is unannotated


class JobList:
    """
    A batch's job references as columns: the fields every job shares once, one list per other field.

    A job's dict is made when it is asked for (a poll), and dropped after: a waiting job costs the
    triggerer its strings, not a dict, nor an object the garbage collector has to walk.
    """

    def __init__(
        self, common: dict[str, Any], keys: Sequence[str], columns: Sequence[Sequence[Any]], count: int = 1
    ) -> None:
        self.common, self.keys, self.columns, self.count = common, keys, columns, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -self.count <= index < self.count:
            raise IndexError(index)
        job = dict(self.common)
        for key, column in zip(self.keys, self.columns, strict=True):
            job[key] = column[index]
        return job

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(self.count))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, JobList | list):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like the list it stands for


class _Batch:
    """One run of a trigger: the schedule of polls, the landing of results, the event that ends it."""

    # A batch's polls in flight, its own set made by _drive. A single job polls in the driver's task and
    # leaves this shared empty one alone: a waiting single job makes no set (nor closure) of its own.
    running: set[asyncio.Task[None]] = set()

    def __init__(self, trigger: DocJobTrigger, hook: DocJobsHook) -> None:
        self.trigger = trigger
        self.hook = hook
        self.single = False  # known once the references are read (they may be sealed)
        self.store = ResultsStore(**trigger.results) if trigger.results else None
        self.interval = trigger.poll_interval
        self.loop = asyncio.get_running_loop()
        self.deadline = self.loop.time() + _seconds_until(trigger.deadline)
        self.failures = 0  # transient poll failures in a row, whichever job they hit: they end the wait
        self.failed: dict[int, int] = {}  # a batch's jobs whose last polls failed: how many in a row
        self.ended: dict[str, Any] | None = None  # an event that ends the whole wait
        self.counts = {"succeeded": 0, "failed": 0}
        self.last_status: JobStatus | None = None
        self.last_progress: str | None = None
        self.logged_at = 0.0
        self.schedule: list[tuple[float, int]] = []
        self.wake: asyncio.Future[None] | None = None
        self.waking_at = 0.0
        self.tick = poll_tick(self.interval)
        self.plan: PollPlan | None = None  # a batch's poll schedule (schedule.py), made by _drive
        # A batch's: its polls in flight, and those waiting out a backoff, their slot lent (_backoff).
        self.slots: asyncio.Semaphore
        self.lent: set[asyncio.Task[Any]]

    async def run(self) -> dict[str, Any]:
        trigger = self.trigger
        # The first poll waits one interval: the sensor polled just before deferring. A batch's counts from
        # when the sensor's poll round began (its jobs found pending then are asked within an interval);
        # the event never comes sooner than an interval from now (_quiet).
        now = self.loop.time()
        self.quiet_until = start = now + self.interval
        if trigger.polled_at is not None:  # a tick early: the round's answers came after it began
            since = -_seconds_until(trigger.polled_at)
            start = now + min(self.interval, max(0.0, self.interval - self.tick - since))
        try:
            # Everything that grows with the batch (decrypting, reading a spilled job list, listing what
            # landed, hashing job references, building the schedule) runs off the loop, in one thread.
            self.jobs, self.single, self.already_landed, self.schedule = await asyncio.to_thread(
                self._prepare, start
            )
        except (OSError, ValueError, KeyError, DocJobsError) as exc:
            return {
                "status": "error",
                "error_type": type(exc).__name__ if isinstance(exc, DocJobsError) else "DocJobsError",
                "message": f"cannot read the batch: {exc}",
            }
        self.log(
            "Waiting for %d %s jobs (%d already landed), polling every %ss",
            len(self.schedule),
            self.hook.vendor,
            self.already_landed,
            self.interval,
        )
        await self._drive()
        await self._quiet()
        if self.ended is not None:
            return self.ended
        if pending := self._pending():
            return {
                "status": "timeout",
                "pending": pending,
                "message": f"{pending} {self.hook.vendor} job(s) still pending at the deadline "
                f"{trigger.deadline} (connection {trigger.conn_id!r})",
            }
        if self.single and self.last_status is not None and self.last_status.state == "failed":
            return {"status": "failed", "message": self.last_status.message, "code": self.last_status.code}
        if self.single:
            return {"status": "success"}
        return {"status": "success", **self.counts, "already_landed": self.already_landed}

    async def _quiet(self) -> None:
        """
        Hold the event until an interval after the trigger started (or the deadline).

        A resume within a second or two of deferring meets Airflow's stale-executor-event race
        (docs/design.md). Only a batch whose first polls, counted from the sensor's poll round, found
        every job ended waits here.
        """
        if (wait := min(self.quiet_until, self.deadline) - self.loop.time()) > 0:
            await asyncio.sleep(wait)

    def _prepare(self, start: float) -> tuple[JobList, bool, int, list[tuple[float, int]]]:
        """
        The jobs, whether single, how many already landed, and the first polls' schedule (in a thread).

        Only the batch's few lists are made, never an object per job but the schedule's entries, and a
        job's key is hashed only when something has landed already (a restarted trigger).
        """
        jobs, single = self.trigger.references()
        todo: Sequence[int] = range(len(jobs))
        if self.store is not None and single:
            todo = [] if self.store.has_landed(jobs[0]) else todo
        elif self.store is not None and (landed := self.store.landed_keys()):
            todo = [i for i in todo if job_key(jobs[i]) not in landed]
        # A single job's first poll also waits a share of a tenth of the interval drawn from its
        # reference: a thousand mapped sensors that defer together do not all poll in the same tick.
        if single and todo:
            start += self.interval / 10 * (int(job_key(jobs[0])[:8], 16) / 0x100000000)
        # Spread over the interval and in order of due time: already a heap.
        step = self.interval / max(1, len(todo))
        schedule = [(start + step * n, i) for n, i in enumerate(todo)]
        return jobs, single, len(jobs) - len(todo), schedule

    def log(self, message: str, *args: Any) -> None:
        self.trigger.log.info(message, *args)

    async def _drive(self) -> None:
        """Start each poll when it is due, at most MAX_IN_FLIGHT at a time, until nothing is left to poll."""
        if not self.single:  # a batch polls by its plan (schedule.py): the first window now, the rest later
            order = [index for _, index in self.schedule]  # built in due order off the loop (_prepare)
            start = self.schedule[0][0] if self.schedule else self.loop.time()
            self.plan = PollPlan(order, start, self.interval, self.tick)
            self.schedule = self.plan.initial()
            heapq.heapify(self.schedule)
            self.slots, self.lent, self.running = asyncio.Semaphore(MAX_IN_FLIGHT), set(), set()
        while self.ended is None and (self.schedule or self.running):
            now = self.loop.time()
            if now >= self.deadline:
                break
            if not self.schedule or self.schedule[0][0] > now:
                await self._sleep(self.schedule[0][0] if self.schedule else None)
                continue
            due, index = heapq.heappop(self.schedule)
            if self.plan is not None and not self.plan.current(due, index):
                continue  # a poll brought forward replaced this one
            if self.single:
                await self._poll(index)  # one job: nothing to overlap with
                continue
            await self.slots.acquire()
            task = self.loop.create_task(self._poll(index))
            self.running.add(task)
            task.add_done_callback(self._done)
        for task in list(self.running):
            task.cancel()
        if self.running:
            await asyncio.gather(*self.running, return_exceptions=True)

    def _pending(self) -> int:
        """The jobs not ended when the driving stopped: those with a poll due, and a batch's parked ones."""
        if self.plan is None:
            return len(self.schedule)
        # Counted, not listed: at the deadline a batch of 100,000 makes no 100,000 tuples on the loop.
        plan = self.plan
        return sum(plan.next.get(index) == due for due, index in self.schedule) + len(plan.remaining())

    def _done(self, task: asyncio.Task[None]) -> None:
        self.running.discard(task)
        if task in self.lent:  # ended (cancelled) while its slot was lent: nothing to give back
            self.lent.discard(task)
        else:
            self.slots.release()
        if not self.schedule and self.wake is not None:
            _settle(self.wake)  # the driver waits for the last polls to end

    async def _sleep(self, due: float | None) -> None:
        """
        Sleep until ``due`` (rounded up to the tick grid), the deadline, or a poll scheduling an earlier one.

        Every trigger in the loop rounds to the same grid, so the polls due within one tick wake the loop
        once, not once each: most of a poll's CPU is the loop's wake-ups.
        """
        when = self.deadline if due is None else min(self.deadline, math.ceil(due / self.tick) * self.tick)
        self.wake = self.loop.create_future()
        self.waking_at = when
        timer = self.loop.call_at(when, _settle, self.wake, context=_NO_CONTEXT)
        try:
            await self.wake
        finally:
            timer.cancel()
            self.wake = None

    def _plan(self, polls: list[tuple[float, int]]) -> None:
        """Schedule polls (due time, job index); wake the driver if one is due before it would wake."""
        for due, index in polls:
            heapq.heappush(self.schedule, (due, index))
            if self.wake is not None and due < self.waking_at:
                _settle(self.wake)

    async def _backoff(self, seconds: float) -> None:
        """A batch's poll waiting out the hook's backoff lends its slot to another job's poll meanwhile."""
        task = asyncio.current_task()
        assert task is not None
        self.lent.add(task)
        self.slots.release()
        await asyncio.sleep(seconds)
        await self.slots.acquire()
        self.lent.discard(task)

    async def _poll(self, index: int) -> None:
        job = self.jobs[index]
        if not self.single:  # this task's own context: the hook's retries of this poll lend its slot
            BACKOFF_SLEEP.set(self._backoff)
        # The plan counts a batch's answers from when the poll was sent: the vendor answered for that
        # moment (or a little later), whatever the round trip and the result's landing took after it.
        sent = self.loop.time()
        try:
            status = await self.hook.aget_job_status(job)
        except VendorTransientError as exc:
            self.failures += 1
            if self.failures >= self.trigger.max_consecutive_failures:
                self._end("error", exc, f"{self.failures} polls in a row failed")
                return
            self.trigger.log.warning("Poll failed (%d in a row), will retry: %s", self.failures, exc)
            # The job backs off from half the poll interval (a job that ended is still found within about
            # an interval after one failed poll): 0.5x, 1x, 2x ... the interval, up to MAX_BACKOFF, counted
            # from when the poll was sent: the hook's own retries of it have spent part of that already.
            # Its own failures count, not the batch's: a plan asking few jobs (schedule.py) is not blinded
            # by a run of failures that each hit another one.
            failed = self.failed[index] = self.failed.get(index, 0) + 1
            delay = min(MAX_BACKOFF, self.interval * 2 ** (failed - 2))
            now = self.loop.time()
            retry = max(now, sent + delay)
            if self.plan is None:
                self._plan([(retry, index)])
            else:
                self._plan(self.plan.failed(index, now, retry))
            return
        except DocJobsError as exc:
            if self.single or isinstance(exc, VendorAuthError):
                self._end("error", exc)
                return
            # One job the vendor does not know (expired, never existed) or refuses: the rest go on.
            status = JobStatus("failed", message=str(exc), code=type(exc).__name__)
        self.failures = 0
        self.failed.pop(index, None)
        if not status.terminal:
            self._progress(status)
            if self.plan is None:
                self._plan([(self.loop.time() + self.interval, index)])
            else:
                self._plan(self.plan.pending(index, sent, status.fraction))
            return
        if self.store is not None:
            # Persist before anything else: the vendor may delete the result (Finovox, after 60 minutes).
            record = landed_record(self.hook.vendor, self.hook.public_job(job), status)
            await asyncio.to_thread(self.store.land, job, record)
        self.counts[status.state] += 1
        self.last_status = status
        if self.plan is not None:
            self._plan(self.plan.ended(index, sent))
        if self.single:
            self.log("%s job (%s) %s", self.hook.vendor, self.hook.describe_job(job), status.state)
        else:
            self._progress(None)

    def _progress(self, status: JobStatus | None) -> None:
        """
        Log progress when it changes: one job's own words, or a batch's counts.

        A batch's counts are logged at most once per interval (and when the last job ends), so a batch of
        10,000 does not write 10,000 lines.
        """
        if status is not None and not self.single:
            return
        if status is not None:
            text = status.progress or "pending"
        else:
            ended = sum(self.counts.values())
            if ended < len(self.jobs) and self.loop.time() - self.logged_at < self.interval:
                return
            text = f"{ended}/{len(self.jobs)} ended ({self.counts['failed']} failed)"
        if text != self.last_progress:
            described = self.hook.describe_job(self.jobs[0]) if self.single else f"batch of {len(self.jobs)}"
            self.log("%s %s: %s", self.hook.vendor, described, text)
            self.last_progress, self.logged_at = text, self.loop.time()

    def _end(self, status: str, exc: DocJobsError, note: str | None = None) -> None:
        message = f"{note}: {exc}" if note else str(exc)
        self.ended = {"status": status, "error_type": type(exc).__name__, "message": message}
        if self.wake is not None:
            _settle(self.wake)


# The wake-up timers' context: call_at would copy the caller's for each, which _settle does not use.
_NO_CONTEXT = contextvars.Context()


def poll_tick(interval: float) -> float:
    """The grid polls are due on: :data:`POLL_TICK`, or a tenth of a shorter poll interval."""
    return min(POLL_TICK, interval / 10) or POLL_TICK


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _moment(text: str) -> pendulum.DateTime:
    """An ISO 8601 time: ``pendulum.parse`` makes a DateTime of it (a Date or a Time only with exact=True)."""
    return pendulum.parse(text)  # type: ignore[return-value]  # its union covers exact=True and durations


def _seconds_until(deadline: str) -> float:
    return (_moment(deadline) - pendulum.now("UTC")).total_seconds()
