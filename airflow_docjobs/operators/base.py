"""One submit operator base: upload once, push the vendor's reference, and never pay twice on a retry."""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from typing import Any, ClassVar

from airflow.providers.common.compat.sdk import BaseOperator, mask_secret

from airflow_docjobs.hooks.base import DocJobsHook

STATE_KEY = "docjobs_submitted"


class DocJobSubmitOperator(BaseOperator):
    """
    Submit a document job and return the vendor's token or job id (the XCom return value).

    Durable on Airflow >= 3.3: the reference is written to ``task_state_store`` the moment the vendor
    answers, and a later try of the same task instance with the same rendered parameters returns it
    instead of submitting (and paying) again. To force a new submission, change the parameters or clear
    the task's state. Older Airflow has no ``task_state_store``; there every try submits.

    :param conn_id: Airflow connection id (subclasses take ``<vendor>_conn_id``).
    """

    hook_class: ClassVar[type[DocJobsHook]]
    ui_color = "#f2e6d9"

    def __init__(self, *, conn_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id

    @cached_property
    def hook(self) -> DocJobsHook:
        return self.hook_class(**{self.hook_class.conn_name_attr: self.conn_id})

    def submit(self, hook: DocJobsHook) -> str:
        """Send the job to the vendor; return its reference."""
        raise NotImplementedError

    def _fingerprint(self) -> str:
        params = {name: getattr(self, name) for name in self.template_fields}
        params["conn_id"] = self.conn_id
        return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()

    def execute(self, context: Any) -> str:
        store = context.get("task_state_store")
        fingerprint = self._fingerprint()
        saved = store.get(STATE_KEY) if store is not None else None
        if isinstance(saved, dict) and saved.get("fingerprint") == fingerprint and saved.get("reference"):
            reference = saved["reference"]
            self._mask(reference)
            self.log.info(
                "Reusing the %s job an earlier try submitted instead of submitting again", self.hook.vendor
            )
            return reference
        if store is None:
            self.log.info("No task_state_store (Airflow < 3.3): a retry of this task will submit again")
        with self.hook:
            reference = self.submit(self.hook)
        self._mask(reference)
        if store is not None:
            store.set(STATE_KEY, {"reference": reference, "fingerprint": fingerprint})
        # A secret reference (Finovox's token) is masked where Airflow's masker runs, and never logged here.
        shown = "(token withheld from logs)" if self.hook_class.secret_job_keys else reference
        self.log.info("Submitted %s job %s", self.hook.vendor, shown)
        return reference

    def _mask(self, reference: str) -> None:
        if self.hook_class.secret_job_keys:
            mask_secret(reference)
