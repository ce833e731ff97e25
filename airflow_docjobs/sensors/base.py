"""One sensor base for every vendor: one job or a batch, in poke, reschedule or deferrable mode."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from functools import cached_property
from itertools import islice
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import pendulum
from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
    mask_secret,
)

from airflow_docjobs import exceptions, metrics
from airflow_docjobs.exceptions import (
    DocJobsError,
    VendorAuthError,
    VendorJobFailedError,
    VendorTransientError,
)
from airflow_docjobs.hooks.calls import FAILED, SUCCEEDED, JobStatus
from airflow_docjobs.results import (
    SUBMITTED,
    ResultsStore,
    batch_key,
    job_key,
    landed_record,
    public_reference,
    read_json,
    write_json,
)
from airflow_docjobs.retry import with_defaults, with_retry_policy
from airflow_docjobs.sensors.memory import PokeMemory
from airflow_docjobs.triggers.job import EVENT_STATUSES, DocJobTrigger
from airflow_docjobs.version_compat import HAS_TRIGGER_QUEUES

if TYPE_CHECKING:
    from airflow_docjobs.hooks.base import DocJobsHook

E = TypeVar("E", bound=DocJobsError)
# How long past the trigger's own deadline the defer timeout waits: a backstop if the triggerer is gone.
DEFER_GRACE = timedelta(minutes=5)
# Polls a batch's poke keeps in flight (below Finovox's 10 concurrent requests per key).
POKE_CONCURRENCY = 8
# How many failed or rejected inputs a batch's log names (the outcomes file has them all).
SHOWN_BAD = 10


class DocJobSensor(BaseSensorOperator):
    """
    Wait for one vendor job and return its result JSON, or for a batch and return one outcome per input.

    Give the reference parameter (``job_id``, ``retrieve_token``, ``document_id``) one reference for a
    single job, or a list (what a list-mode submit returns, ``None`` for inputs it rejected) for a batch.
    A batch returns, in input order, ``{"reference", "input", "sha256", "state", "error", "result_uri"}``
    with ``state`` one of ``succeeded``, ``failed``, ``rejected``; results themselves stay in the results
    store (they hold personal data and can be large). The task fails once every outcome is recorded if
    more than ``max_failed`` items failed or were rejected; the outcomes are then in the store, at the URI
    the error names.

    Every result lands in the results store the moment it is fetched (``results_uri``; see
    :mod:`airflow_docjobs.results`). In deferrable mode one trigger waits for the whole batch
    (:class:`~airflow_docjobs.triggers.job.DocJobTrigger`) with an absolute deadline ``timeout`` seconds
    after the first poke, and the resumed sensor reads the store, not the vendor. Otherwise each poke
    polls the jobs not yet landed. A transient poll failure never ends the wait by itself; a
    vendor-reported failure of a single job fails the task at once (``VendorJobFailedError``, no retry).

    :param deferrable: run the wait in the triggerer; defaults to ``[operators] default_deferrable``.
    :param max_consecutive_failures: transient poll failures in a row that end the wait.
    :param results_uri: where results land; defaults to ``[docjobs] results_uri``.
    :param max_failed: failed or rejected items a batch tolerates before the task fails.
    :param trigger_queue: the triggerer queue of the wait (Airflow >= 3.2, with ``[triggerer]
        queues_enabled``): only triggerers started with ``airflow triggerer --queues`` naming it run it, so
        document waits can have triggerers of their own. The task itself still runs on its ``queue``.
    """

    hook_class: ClassVar[type[DocJobsHook]]
    reference_field: ClassVar[str]
    # This sensor's attributes the hook's job_reference takes beside the reference.
    reference_params: ClassVar[tuple[str, ...]] = ()
    default_poke_interval: ClassVar[float] = 30.0
    ui_color = "#d9ecf2"

    def __init__(
        self,
        *,
        conn_id: str,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        max_consecutive_failures: int = 10,
        poke_interval: float | timedelta | None = None,
        results_uri: str | None = None,
        max_failed: int = 0,
        trigger_queue: str | None = None,
        **kwargs: Any,
    ) -> None:
        # Retries are cheap here (a retry reads landed results, never resubmits) and they absorb Airflow's
        # stale-executor-event race on resumed deferrable tasks (docs/design.md); a vendor-reported failure
        # and a timeout still fail at once. Only where the user said nothing, here or in default_args.
        super().__init__(
            **with_retry_policy(with_defaults(kwargs, retries=2, retry_delay=timedelta(seconds=10))),
            poke_interval=self.default_poke_interval if poke_interval is None else poke_interval,
        )
        self.conn_id = conn_id
        self.deferrable = deferrable
        self.max_consecutive_failures = max_consecutive_failures
        self.results_uri = results_uri
        self.max_failed = max_failed
        self.trigger_queue = trigger_queue
        if trigger_queue is not None and not HAS_TRIGGER_QUEUES:
            raise self.hook.bad_input(
                "trigger_queue", "trigger queues need Airflow >= 3.2 (airflow triggerer --queues)"
            )
        self._memory = PokeMemory()
        self._landed: set[str] = set()  # a batch's keys landed, as its last poke listed and landed them

    def job_for(self, reference: str) -> dict[str, Any]:
        """The JSON job reference for one reference string, from the (rendered) parameters."""
        return self.hook_class.job_reference(
            reference, **{name: getattr(self, name) for name in self.reference_params}
        )

    @cached_property
    def hook(self) -> DocJobsHook:
        """The vendor hook on this sensor's connection."""
        return self.hook_class(**{self.hook_class.conn_name_attr: self.conn_id})

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Render the fields, then check the references and mask secret tokens among them."""
        super().render_template_fields(context, jinja_env)
        self.references  # noqa: B018 - masks secret tokens before Airflow stores the rendered fields for the UI

    @cached_property
    def batch(self) -> bool:
        """Whether the reference parameter is a list (list mode: one trigger waits for every job)."""
        value = getattr(self, self.reference_field)
        return isinstance(value, Sequence) and not isinstance(value, str)

    @cached_property
    def references(self) -> list[str | None]:
        """The rendered references: a batch's list, or a list of one."""
        value = getattr(self, self.reference_field)
        # By index, not by iterating: iterating a mapped task's lazy XCom sequence probes past its end and
        # Airflow logs an "XCom not found" error for that probe.
        refs = [value[i] for i in range(len(value))] if self.batch else [value]
        if not refs:
            raise self.hook.bad_input(self.reference_field, "the list of references is empty")
        for ref in refs:
            if ref is not None and (not isinstance(ref, str) or not ref.strip()):
                raise self.hook.bad_input(self.reference_field, f"expected a reference string, got {ref!r}")
            if ref and self.hook_class.secret_job_keys:
                mask_secret(ref)
        if not self.batch and refs[0] is None:
            raise self.hook.bad_input(self.reference_field, "no reference (the submit rejected its input)")
        return refs

    @cached_property
    def jobs(self) -> list[dict[str, Any]]:
        """One job reference per accepted input, in input order."""
        return [self.job_for(ref) for ref in self.references if ref is not None]

    @property
    def job(self) -> dict[str, Any]:
        """The one job reference of single mode."""
        return self.jobs[0]

    def store(self, context: Any) -> ResultsStore:
        """The results store of this run and vendor."""
        return ResultsStore.for_run(self.results_uri, self.hook_class.conn_type, context)

    # ---- deferrable ---------------------------------------------------------------------------------

    def execute(self, context: Any) -> Any:
        """Poke in the worker; when deferrable, poll once and defer what still runs to the trigger."""
        # Each try starts afresh: Airflow runs a try on a shallow copy, which would share the memory.
        self._memory = PokeMemory()
        if not self.deferrable:
            try:
                with self.hook:  # every poke of a try reuses one client; a reschedule closes it
                    return super().execute(context)
            except AirflowSensorTimeout as exc:
                raise AirflowSensorTimeout(
                    f"{exc} ({self.hook.vendor}, connection {self.conn_id!r})"
                ).with_traceback(exc.__traceback__) from exc
        if self.trigger_queue and not conf.getboolean("triggerer", "queues_enabled", fallback=False):
            raise self.hook.bad_input(
                "trigger_queue",
                "the triggerer queue is ignored unless [triggerer] queues_enabled is True"
                " (AIRFLOW__TRIGGERER__QUEUES_ENABLED) where the task runs",
            )
        # One round of polls first: jobs that already ended need no trigger.
        polled_at = pendulum.now("UTC")
        with self.hook:
            done = self._first_poke(context)
        if done:
            return done.xcom_value
        store = self.store(context)
        # A batch's jobs not landed, from the first poke's one listing of the store (plus what it landed).
        pending = (
            [job for job in self._queue if job_key(job) not in self._landed] if self.batch else self.jobs
        )
        deadline = pendulum.now("UTC").add(seconds=self.timeout)
        if self.trigger_queue:
            # Airflow (3.2+) gives the trigger the queue of the task instance that defers (ti.task is this
            # very object): the trigger's, not the task's, since a resumed task is queued from its row.
            self.queue = self.trigger_queue
        self.defer(
            trigger=DocJobTrigger(
                hook_class=f"{self.hook_class.__module__}.{self.hook_class.__qualname__}",
                conn_id=self.conn_id,
                deadline=deadline.isoformat(),
                poll_interval=self.poke_interval,
                max_consecutive_failures=self.max_consecutive_failures,
                results=store.spec(),
                polled_at=polled_at.isoformat() if self.batch else None,
                **DocJobTrigger.job_kwargs(
                    self.hook_class,
                    self.conn_id,
                    store=store,
                    **({"jobs": pending} if self.batch else {"job": self.job}),
                ),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) + DEFER_GRACE,
        )

    def _first_poke(self, context: Any) -> PokeReturnValue | Literal[False]:
        """The deferrable path's first poke, with soft_fail and never_fail as BaseSensorOperator applies them."""
        try:
            return self._poke_batch(context, until_pending=True) if self.batch else self.poke(context)
        except AirflowSkipException:
            raise
        except (AirflowFailException, AirflowSensorTimeout) as exc:
            if self.soft_fail or self.never_fail:
                raise AirflowSkipException(
                    f"Skipping: {'soft' if self.soft_fail else 'never'}_fail is set"
                ) from exc
            raise
        except Exception as exc:
            if self.never_fail:
                raise AirflowSkipException("Skipping: never_fail is set") from exc
            raise

    def execute_complete(self, context: Any, event: Any = None) -> Any:
        """Resume after the trigger: read what it landed (the event never carries a result)."""
        if not isinstance(event, Mapping) or event.get("status") not in EVENT_STATUSES:
            raise self._error(DocJobsError, f"unexpected trigger event {event!r}")
        status = event["status"]
        if status == "error":
            error = getattr(exceptions, str(event.get("error_type")), None)
            if not (isinstance(error, type) and issubclass(error, DocJobsError)):
                error = DocJobsError
            raise error(event.get("message") or "the wait failed")
        if self.batch:
            return self._finish_batch(context, timed_out=status == "timeout", message=event.get("message"))
        if status == "timeout":
            raise AirflowSensorTimeout(event.get("message") or "the job did not end before the timeout")
        if status == "failed":
            raise self._job_failed(event.get("message"), event.get("code"))
        store = self.store(context)
        record = store.landed(self.job) or self._fetch_missing(self.job, store)
        if record is None:
            raise self._error(DocJobsError, "the trigger saw the job end but the vendor now reads it pending")
        return self._landed_result(record)

    def _landed_result(self, record: Mapping[str, Any]) -> Any:
        if record["state"] == FAILED:
            raise self._job_failed(record["error"]["message"], record["error"]["code"])
        return record["result"]

    # ---- poke / reschedule ----------------------------------------------------------------------------

    def poke(self, context: Any) -> PokeReturnValue | Literal[False]:
        """Poll the jobs not landed yet; done with the result, or a batch's outcomes, once every job ended."""
        if not self.batch:
            # A retried sensor (or one resumed on another worker) takes a landed result from the store.
            if (record := self.store(context).landed(self.job)) is not None:
                return PokeReturnValue(is_done=True, xcom_value=self._landed_result(record))
            status = self._poll(self.job, context)
            return False if status is None else self._read(status, context)
        return self._poke_batch(context)

    def _poke_batch(self, context: Any, until_pending: bool = False) -> PokeReturnValue | Literal[False]:
        """
        Poll a batch's jobs not landed yet, oldest first; land those that ended.

        ``until_pending`` (the first poke before deferring) stops at the first job still pending: the
        vendor runs its oldest jobs first, so the younger ones are most likely pending too, and the
        trigger polls them when they can have ended (``triggers/schedule.py``).
        """
        store = self.store(context)
        # One listing of the store, not a read per job (a request each on S3); kept for execute()'s defer,
        # with the jobs in the order the vendor took them (the trigger polls them in it).
        self._landed = landed = store.landed_keys()
        self._queue = self._in_vendor_order(store) if until_pending else self.jobs
        waiting = (job for job in self._queue if job_key(job) not in landed)
        self.hook.get_conn()  # one client for every thread, built before they start
        with ThreadPoolExecutor(POKE_CONCURRENCY, thread_name_prefix="docjobs-poke") as pool:
            # Up to POKE_CONCURRENCY polls in flight, their answers taken in the batch's order here: the
            # requests are those of polling one job after the other (but for the few already sent when
            # ``until_pending`` stops), and a thousand ended jobs are found in a fraction of the time.
            ahead: deque[tuple[dict[str, Any], Future[JobStatus]]] = deque()
            ahead.extend(
                (job, pool.submit(self.hook.get_job_status, job)) for job in islice(waiting, POKE_CONCURRENCY)
            )
            while ahead:
                job, answer = ahead.popleft()
                status = self._poll(job, context, answer)
                if status is not None and status.terminal:
                    store.land(job, landed_record(self.hook.vendor, self.hook.public_job(job), status))
                    landed.add(job_key(job))
                elif until_pending:
                    for _, later in ahead:
                        later.cancel()
                    break
                ahead.extend((job, pool.submit(self.hook.get_job_status, job)) for job in islice(waiting, 1))
        if all(job_key(job) in landed for job in self.jobs):
            return PokeReturnValue(is_done=True, xcom_value=self._finish_batch(context))
        self.log.info(
            "%d/%d %s jobs ended",
            len(landed & {job_key(j) for j in self.jobs}),
            len(self.jobs),
            self.hook.vendor,
        )
        return False

    def _submitted(self, store: ResultsStore) -> list[dict[str, Any]]:
        """The submit's record of the batch, an entry per reference (empty ones if it did not make them)."""
        try:
            record: list[dict[str, Any]] = read_json(
                store.named(SUBMITTED, f"{batch_key(self.references)}.json")
            )
            return record
        except (FileNotFoundError, ValueError):
            return [{} for _ in self.references]  # references that came from elsewhere than our submit

    def _in_vendor_order(self, store: ResultsStore) -> list[dict[str, Any]]:
        """
        A batch's jobs in the order the vendor took them, as the submit recorded it (else the inputs').

        Concurrent submits reach the vendor a few places out of the inputs' order, and a vendor runs its
        oldest first. Jobs an earlier try submitted come first: the vendor took them before.
        """
        refs = self.references
        rank = {
            ref: given["accepted"]
            for ref, given in zip(refs, self._submitted(store), strict=True)
            if "accepted" in given
        }
        taken = [ref for ref in refs if ref is not None]
        order = sorted(range(len(taken)), key=lambda n: (rank.get(taken[n], -1), n))
        return [self.jobs[n] for n in order]

    def _poll(
        self, job: dict[str, Any], context: Any, answer: Future[JobStatus] | None = None
    ) -> JobStatus | None:
        """Poll once (or take the ``answer`` of a poll sent ahead); ``None`` after a transient failure."""
        try:
            status = answer.result() if answer is not None else self.hook.get_job_status(job)
        except VendorTransientError as exc:
            failures = self._memory.failures_in_a_row(context, self.reschedule, 1)
            if failures >= self.max_consecutive_failures:
                raise
            self.log.warning("Poll %d failed, will retry: %s", failures, exc)
            return None
        except DocJobsError as exc:
            if not self.batch or isinstance(exc, VendorAuthError):
                raise
            status = JobStatus(FAILED, message=str(exc), code=type(exc).__name__)
        self._memory.failures_in_a_row(context, self.reschedule, 0)
        return status

    def _read(self, status: JobStatus, context: Any) -> PokeReturnValue | Literal[False]:
        """A single job's poll: land and return a result, fail on a failed job, log progress."""
        if status.terminal:
            record = landed_record(self.hook.vendor, self.hook.public_job(self.job), status)
            self.store(context).land(self.job, record)
        if status.state == SUCCEEDED:
            return PokeReturnValue(is_done=True, xcom_value=status.result)
        if status.state == FAILED:
            raise self._job_failed(status.message, status.code)
        if self._memory.progress_changed(context, self.reschedule, status.progress):
            self.log.info(
                "%s job %s: %s",
                self.hook.vendor,
                self.hook.describe_job(self.job),
                status.progress or "pending",
            )
        return False

    # ---- a batch's outcomes ---------------------------------------------------------------------------

    def _finish_batch(
        self, context: Any, timed_out: bool = False, message: str | None = None
    ) -> list[dict[str, Any]]:
        """Record one outcome per input in the store, then fail if too many did not succeed."""
        store = self.store(context)
        outcomes = []
        for ref, given in zip(self.references, self._submitted(store), strict=True):
            outcome: dict[str, Any] = {
                "reference": public_reference(self.hook, self.reference_field, ref),
                "input": given.get("input"),
                "sha256": given.get("sha256"),
                "state": "rejected",
                "error": given.get("error") or {"code": "rejected", "message": "rejected at submit"},
                "result_uri": None,
            }
            if ref is not None:
                job = self.job_for(ref)
                record = store.landed(job) or (None if timed_out else self._fetch_missing(job, store))
                record = record or {
                    "state": FAILED,
                    "error": {"code": "timeout", "message": message or "still pending at the deadline"},
                }
                outcome |= {"state": record["state"], "error": record.get("error")}
                _time_vendor(self.hook.conn_type, given.get("submitted_at"), record.get("finished_at"))
                # Failed jobs landed too (their error, when they ended): ingestion reads both.
                outcome["result_uri"] = store.uri(job_key(job)) if "landed_at" in record else None
            outcomes.append(outcome)
        uri = store.named(f"{_task_name(context)}.outcomes.json")
        write_json(uri, outcomes)
        bad = [o for o in outcomes if o["state"] != SUCCEEDED]
        self.log.info(
            "%s batch: %d succeeded, %d failed, %d rejected; outcomes at %s",
            self.hook.vendor,
            len(outcomes) - len(bad),
            sum(o["state"] == FAILED for o in bad),
            sum(o["state"] == "rejected" for o in bad),
            uri,
        )
        for outcome in bad[:SHOWN_BAD]:
            error = outcome["error"] or {}
            self.log.warning(
                "%s %s: %s (%s)",
                outcome["state"],
                outcome["input"] or outcome["reference"],
                error.get("code") or "no code",
                str(error.get("message") or "")[:300],
            )
        if len(bad) > SHOWN_BAD:
            self.log.warning("... and %d more; every outcome is at %s", len(bad) - SHOWN_BAD, uri)
        if timed_out:
            raise AirflowSensorTimeout(
                f"{message or 'the batch did not end before the timeout'}; outcomes at {uri}"
            )
        if len(bad) > self.max_failed:
            # Terminal like a single job's failure: a retry would read the same outcomes again.
            raise self._error(
                VendorJobFailedError,
                f"{len(bad)} of {len(outcomes)} items failed or were rejected (max_failed={self.max_failed}); "
                f"every outcome is recorded at {uri}",
            )
        return outcomes

    def _fetch_missing(self, job: dict[str, Any], store: ResultsStore) -> dict[str, Any] | None:
        """
        Fetch once more from the vendor a result the trigger landed where this worker cannot read it.

        Land it here, and say which setting to fix.
        """
        self.log.warning(
            "The result of %s job %s is not in the results store %s (a file:// store this worker cannot "
            "see?); fetching it from the vendor again. Set [docjobs] results_uri or the sensor's "
            "results_uri to a store that the triggerer and the workers share.",
            self.hook.vendor,
            self.hook.describe_job(job),
            store.prefix,
        )
        with self.hook:
            status = self._poll(job, {})
        if status is None or not status.terminal:
            return None
        store.land(job, landed_record(self.hook.vendor, self.hook.public_job(job), status))
        return store.landed(job)

    def _error(self, cls: type[E], summary: str) -> E:
        return cls(summary, vendor=self.hook.vendor, conn_id=self.conn_id)

    def _job_failed(self, message: str | None, code: str | None = None) -> VendorJobFailedError:
        return VendorJobFailedError(
            "the job failed",
            vendor=self.hook.vendor,
            conn_id=self.conn_id,
            job_id=self.hook.describe_job(self.job),
            vendor_message=message,
            code=code,
        )


def _task_name(context: Any) -> str:
    ti = context["ti"]
    index = getattr(ti, "map_index", -1)
    return ti.task_id if index is None or index < 0 else f"{ti.task_id}.{index}"


def _time_vendor(vendor: str, submitted_at: str | None, finished_at: str | None) -> None:
    """The vendor's latency, from the submit it took to the result fetched (``docjobs.{vendor}.latency``)."""
    if submitted_at and finished_at:
        seconds = (datetime.fromisoformat(finished_at) - datetime.fromisoformat(submitted_at)).total_seconds()
        metrics.timing(vendor, "latency", max(0.0, seconds))
