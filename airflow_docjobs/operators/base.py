"""One submit operator base: one input or a batch, never paying twice for what the vendor already took."""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from functools import cached_property
from itertools import islice
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import BaseOperator, mask_secret

from airflow_docjobs.exceptions import (
    DocJobsError,
    DocJobsInputError,
    VendorNotFoundError,
    VendorRequestError,
    VendorTransientError,
)
from airflow_docjobs.hooks.calls import PENDING, SUCCEEDED
from airflow_docjobs.hooks.inputs import content_sha256, documents_under, is_folder, load
from airflow_docjobs.lineage import datasets
from airflow_docjobs.results import SUBMITTED, ResultsStore, batch_key, fernet, now_iso, write_json
from airflow_docjobs.retry import with_retry_policy
from airflow_docjobs.version_compat import resumable_job_mixin

if TYPE_CHECKING:
    from airflow.sdk import ResumableJobMixin  # the stand-in of older Airflow has the same interface

    from airflow_docjobs.hooks.base import DocJobsHook
else:
    ResumableJobMixin = resumable_job_mixin()

# Airflow's ResumableJobMixin stores one input's job under this key; a batch stores one key per document.
ITEM_KEY = "docjobs_item_{sha256}"
STARTED_KEY = "docjobs_batch_started"  # written by a batch's first try before it submits anything


class DocJobSubmitOperator(ResumableJobMixin, BaseOperator):
    """
    Submit one document job and return the vendor's token or job id, or a batch and return a list of them.

    **List mode.** Give the input parameter a list, a folder, or an object-storage prefix ending in ``/``
    (every document under it): the documents are submitted concurrently, at most ``max_in_flight`` at a
    time, and the task returns one reference per input in input order, ``None`` for an input that was
    rejected (missing, empty or unsupported, checked before sending; or refused by the vendor with a 400
    or 422). Inputs with the same content (SHA-256) are submitted once and share their reference. Which
    inputs were rejected, and why, is written to the results store for the sensor's outcomes.

    **Durable** on Airflow >= 3.3: each reference is written to ``task_state_store`` the moment the vendor
    accepts it, before the next document is sent, and a later try with the same rendered parameters reuses
    it instead of submitting (and paying) again, so a retried batch submits only what the vendor has not
    accepted yet (a lost worker can leave at most the ``max_in_flight`` submits then running unrecorded,
    and the retry sends those again). Documents that still fail transiently after the hook's retries fail
    the task once the rest are submitted. Older Airflow has no ``task_state_store``; there every try
    submits.

    :param conn_id: Airflow connection id (subclasses take ``<vendor>_conn_id``).
    :param max_in_flight: concurrent submits of a batch (default: the vendor's advice).
    :param results_uri: the results store (default ``[docjobs] results_uri``).
    """

    hook_class: ClassVar[type[DocJobsHook]]
    external_id_key = "docjobs_submitted"
    input_field: ClassVar[str]
    # This operator's attributes the hook's submit takes for each input, and its job_reference.
    submit_params: ClassVar[tuple[str, ...]] = ()
    reference_params: ClassVar[tuple[str, ...]] = ()
    default_max_in_flight: ClassVar[int] = 8
    ui_color = "#f2e6d9"
    # What the vendor took, for lineage: the input (single mode) or each accepted input of the batch.
    submitted: tuple[Any, ...] = ()

    def __init__(
        self,
        *,
        conn_id: str,
        max_in_flight: int | None = None,
        results_uri: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**with_retry_policy(kwargs))
        self.conn_id = conn_id
        self.max_in_flight = max_in_flight or self.default_max_in_flight
        self.results_uri = results_uri

    @cached_property
    def hook(self) -> DocJobsHook:
        """The vendor hook on this operator's connection."""
        return self.hook_class(**{self.hook_class.conn_name_attr: self.conn_id})

    def submit_one(self, hook: DocJobsHook, item: Any) -> str:
        """Send one input to the vendor with this operator's ``submit_params``; return its reference."""
        return hook.submit(item, **{name: getattr(self, name) for name in self.submit_params})

    def batch_items(self) -> list[Any] | None:
        """The inputs of a batch, or ``None`` in single mode; folders and prefixes stand for their files."""
        value = getattr(self, self.input_field)
        if isinstance(value, (list, tuple)):
            items = list(value)
        elif is_folder(value):
            items = [value]
        else:
            return None
        expanded = [doc for item in items for doc in (documents_under(item) if is_folder(item) else [item])]
        if not expanded:
            raise self.hook.bad_input(self.input_field, f"no documents in {value!r}")
        return expanded

    def _fingerprint(self, *exclude: str) -> str:
        params = {name: getattr(self, name) for name in self.template_fields if name not in exclude}
        params["conn_id"] = self.conn_id
        return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()

    def execute(self, context: Any) -> str | list[str | None]:
        """Submit the input, or each input of a batch; return the reference, or one per input."""
        # Nothing is paid for before the store the sensor will land results in is known to be writable.
        source = "parameter 'results_uri'" if self.results_uri else "[docjobs] results_uri"
        self._store(context).check_writable(source, self.hook_class.vendor)
        items = self.batch_items()
        if items is not None:
            return self._execute_batch(context, items)
        reference: str = self.execute_resumable(context)
        self.submitted = (getattr(self, self.input_field),)
        return reference

    # ---- lineage: called by the OpenLineage provider, which is imported only then ---------------------

    def documents_of(self, item: Any) -> list[Any]:
        """The documents one submitted input stands for: itself, or each of a list (one docimprint job)."""
        return list(item) if isinstance(item, (list, tuple)) else [item]

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Every document the vendor took is an input dataset; the vendor's job is not a dataset."""
        from airflow.providers.openlineage.extractors import OperatorLineage

        return OperatorLineage(
            inputs=datasets(doc for item in self.submitted for doc in self.documents_of(item))
        )

    # ---- one input: Airflow's ResumableJobMixin decides between reusing a stored job and submitting ------

    def submit_job(self, context: Any) -> dict[str, Any]:
        """Submit the single input (``ResumableJobMixin``); return what a durable submit stores."""
        with self.hook:
            reference = self.submit_one(self.hook, getattr(self, self.input_field))
        self._mask(reference)
        # A secret reference (Finovox's token) is masked where Airflow's masker runs, and never logged here.
        shown = "(token withheld from logs)" if self.hook_class.secret_job_keys else reference
        self.log.info("Submitted %s job %s", self.hook.vendor, shown)
        return self._stored(reference, self._fingerprint())

    def get_job_status(self, external_id: Any, context: Any) -> str:
        """The state of a stored job: ``changed`` when the parameters differ, else its polled state."""
        if not isinstance(external_id, dict) or external_id.get("fingerprint") != self._fingerprint():
            return "changed"  # other inputs or settings: always a new job
        with self.hook:
            return self._check_stored(external_id)

    def is_job_active(self, status: str) -> bool:
        """Whether a stored job is still pending (``ResumableJobMixin``)."""
        return status == PENDING

    def is_job_succeeded(self, status: str) -> bool:
        """Whether a stored job has succeeded (``ResumableJobMixin``)."""
        return status == SUCCEEDED

    # Airflow annotates it None, yet its execute_resumable returns it on a reconnect: the reference.
    def poll_until_complete(self, external_id: Any, context: Any) -> str:  # type: ignore[override]
        """Return the reference without waiting: the sensor waits for the job."""
        # The sensor waits for the job (in the triggerer); the submit only hands its reference on.
        return self.get_job_result(external_id, context)

    def get_job_result(self, external_id: Any, context: Any) -> str:
        """The reference of a stored job, masked in logs."""
        reference = self._reference(external_id)
        self._mask(reference)
        return reference

    # ---- what is stored, and the check before a stored job is reused ----------------------------------

    def _stored(self, reference: str, fingerprint: str) -> dict[str, Any]:
        """What a durable submit keeps: a secret reference only encrypted (Airflow's mixin logs it)."""
        stored: dict[str, Any] = {"fingerprint": fingerprint, "submitted_at": time.time()}
        if self.hook_class.secret_job_keys:
            return stored | {"reference_fernet": fernet().encrypt(reference.encode()).decode()}
        return stored | {"reference": reference}

    @staticmethod
    def _reference(stored: dict[str, Any]) -> str:
        if "reference_fernet" in stored:
            return fernet().decrypt(stored["reference_fernet"].encode()).decode()
        reference: str = stored["reference"]
        return reference

    def job_for(self, reference: str) -> dict[str, Any]:
        """The job reference the hook polls, for a reference this operator returned."""
        return self.hook_class.job_reference(
            reference, **{name: getattr(self, name) for name in self.reference_params}
        )

    def _check_stored(self, stored: dict[str, Any]) -> str:
        """
        Poll a stored job once before reusing it; return its state, or why it must be submitted again.

        Pending or succeeded is reused; failed, unknown to the vendor (``not_found``), or older than the
        vendor keeps results (``expired``: a Finovox token then reads "pending" forever) is submitted again.
        """
        try:
            status = self.hook.get_job_status(self.job_for(self._reference(stored)))
        except VendorNotFoundError:
            return "not_found"
        ttl = self.hook.result_ttl
        if status.state == PENDING and ttl and time.time() - stored.get("submitted_at", 0) > ttl:
            return "expired"
        return status.state

    def _execute_batch(self, context: Any, items: list[Any]) -> list[str | None]:
        """
        Submit each input of a batch once per distinct content; return one reference per input (or None).

        Each input goes through its own steps, at most ``max_in_flight`` inputs at a time: read it once
        (``load``: the hash, the checks and the upload use those bytes), then reuse the job an earlier try
        stored for that content if the vendor still has it, or submit it. A document is sent only once every
        submit before it that finished is recorded: a crash loses at most the submits then in flight.
        """
        state = context.get("task_state_store")
        fingerprint = self._fingerprint(self.input_field)
        # A first try has stored nothing: it says it started and looks up no document (a state-store
        # round trip each: some 10 ms in `dags test`, 100-300 ms through a loaded worker's supervisor).
        earlier = state is not None and state.get(STARTED_KEY) is not None
        if state is not None and not earlier:
            state.set(STARTED_KEY, True)
        hook = self.hook
        hook.get_conn()  # one client for every thread, built before they start
        entries: list[dict[str, Any]] = [
            {"input": _shown(item), "sha256": None, "error": None} for item in items
        ]
        first: dict[str, int] = {}  # each content's input that is submitted (or reused) for all its copies
        stored: dict[int, dict[str, Any]] = {}  # jobs earlier tries submitted, by input
        taken: dict[int, str] = {}
        accepted: dict[int, float] = {}  # when the vendor's answer to each submit came (monotonic clock)
        not_taken: list[tuple[int, VendorTransientError]] = []
        waiting = iter(range(len(items)))
        steps: dict[Future[Any], tuple[str, int, Any]] = {}

        with ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="docjobs-submit") as pool:

            def step(name: str, index: int, document: Any, call: Any, *args: Any) -> None:
                steps[pool.submit(call, *args)] = (name, index, document)

            def advance(name: str, index: int, document: Any, future: Future[Any]) -> bool:
                """Take one finished step; return whether the input is done (its slot is free)."""
                if name == "read":
                    document, sha = future.result()
                    entries[index]["sha256"] = sha
                    if first.setdefault(sha or f"unreadable:{index}", index) != index:
                        return True  # a copy of an earlier input's content: that input's job is its job
                    saved = state.get(ITEM_KEY.format(sha256=sha)) if earlier and sha else None
                    if isinstance(saved, dict) and saved.get("fingerprint") == fingerprint:
                        stored[index] = saved  # reused only if the vendor still has it pending or done
                        step("check", index, document, self._check_stored, saved)
                    else:
                        step("submit", index, None, self._submit_counted, hook, document)
                    return False
                if name == "check":
                    if future.result() in (PENDING, SUCCEEDED):
                        taken[index] = self._reference(stored[index])
                        return True
                    step("submit", index, None, self._submit_counted, hook, document)
                    return False
                try:
                    reference, entries[index]["resent_after_ambiguous_answer"], accepted[index] = (
                        future.result()
                    )
                except (DocJobsInputError, VendorRequestError) as exc:
                    entries[index]["error"] = _error(exc)
                    return True
                except VendorTransientError as exc:
                    not_taken.append((index, exc))
                    return True
                taken[index] = reference
                entries[index]["submitted_at"] = now_iso()  # the sensor times the vendor from it
                self._mask(reference)
                # Recorded the moment the vendor took it, before the next document is sent (Airflow
                # answers the write once the API server committed it): a retry after a crash reuses it.
                if state is not None and (sha := entries[index]["sha256"]):
                    state.set(ITEM_KEY.format(sha256=sha), self._stored(reference, fingerprint))
                return True

            try:
                for index in islice(waiting, self.max_in_flight):
                    step("read", index, None, _read, items[index])
                while steps:
                    done, _ = wait(steps, return_when=FIRST_COMPLETED)
                    for future in done:
                        if advance(*steps.pop(future), future):
                            for index in islice(waiting, 1):
                                step("read", index, None, _read, items[index])
            except BaseException:
                for future in steps:
                    future.cancel()
                raise
            finally:
                hook.close()
        # The order the vendor took the jobs in (concurrent submits reach it a few places out of the inputs'
        # order): the deferring sensor polls them in it (PollPlan, "Oldest first").
        for rank, index in enumerate(sorted(accepted, key=accepted.__getitem__)):
            entries[index]["accepted"] = rank
        reused = sum(index in taken for index in stored)
        if stored:
            self.log.info(
                "%d %s jobs earlier tries submitted: %d reused, %d submitted again (failed, unknown or expired)",
                len(stored),
                hook.vendor,
                reused,
                len(stored) - reused,
            )
        digests = [entry["sha256"] for entry in entries]
        references: list[str | None] = []
        for index, sha in enumerate(digests):
            source = first[sha or f"unreadable:{index}"]
            references.append(taken.get(source))
            if entries[index]["error"] is None and source != index:
                entries[index]["error"] = entries[source]["error"]
        self._record(context, references, entries)
        self.submitted = tuple(item for item, reference in zip(items, references, strict=True) if reference)
        rejected = sum(e["error"] is not None for e in entries)
        self.log.info(
            "%s batch of %d: %d jobs, %d reused from earlier tries and %d submitted now (%d resent after an "
            "answer that may have created a job), %d rejected, %d still to submit",
            hook.vendor,
            len(items),
            len({r for r in references if r}),
            reused,
            len({r for r in references if r}) - reused,
            sum(e.get("resent_after_ambiguous_answer", 0) for e in entries),
            rejected,
            len(not_taken),
        )
        if not_taken:
            index, first_error = not_taken[0]
            raise hook.error(
                VendorTransientError,
                f"{len(not_taken)} of {len(items)} documents could not be submitted (the first, "
                f"{entries[index]['input']}: {first_error.summary}); a retry submits only those",
            ) from first_error
        return references

    def _submit_counted(self, hook: DocJobsHook, item: Any) -> tuple[str, int, float]:
        reference = self.submit_one(hook, item)
        return reference, hook.last_resends(), time.monotonic()

    def _record(self, context: Any, references: list[str | None], entries: list[dict[str, Any]]) -> None:
        """Which inputs a batch had and why some were rejected, where the sensor finds it by its references."""
        write_json(self._store(context).named(SUBMITTED, f"{batch_key(references)}.json"), entries)

    def _store(self, context: Any) -> ResultsStore:
        return ResultsStore.for_run(self.results_uri, self.hook_class.conn_type, context)

    def _mask(self, reference: str) -> None:
        if self.hook_class.secret_job_keys:
            mask_secret(reference)


def _read(item: Any) -> tuple[Any, str | None]:
    """An input read once (``load``) and the SHA-256 that identifies it."""
    document = load(item, folders=True)
    return document, content_sha256(document)


def _shown(item: Any) -> str:
    """An input as outcomes and logs name it: never inline content."""
    if isinstance(item, (bytes, bytearray)):
        return f"<{len(item)} bytes>"
    text = str(item)
    return text if not text.startswith(("base64:", "data:")) else f"<inline base64, {len(text)} characters>"


def _error(exc: DocJobsError) -> dict[str, str]:
    code = "invalid_input" if isinstance(exc, DocJobsInputError) else f"http_{exc.status_code}"
    return {"code": code, "message": str(exc)}
