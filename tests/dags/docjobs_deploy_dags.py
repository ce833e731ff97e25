"""
DAGs of the real-deployment test (``tests/test_deployment.py``: Airflow on PostgreSQL with a LocalExecutor and
two triggerers, against the emulator). Every input comes from the run conf, so parsing does no I/O.

* ``docjobs_deploy_batch``: list mode for every vendor (one submit of a folder, one deferrable sensor that
  waits for the whole list; docimprint: one submit per document) and mapped single-document sensors (one
  list submit, one sensor per document). The test kills a triggerer while they wait.
* ``docjobs_deploy_resubmit``: submits whose worker dies (SIGKILL) on try 1 right after the vendor accepted
  the job(s): the retry must find the references in ``task_state_store`` and submit nothing.
* ``docjobs_deploy_race``: mapped submit -> sensor pairs whose jobs end a second or two after the sensor
  defers, the timing of Airflow 3.3's stale-executor-event race (docs/design.md).

``make_conf`` writes the documents of a batch and a resubmit run and gives their conf.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import DAG, task, task_group

from airflow_docjobs.operators.biros import BirosSubmitOperator
from airflow_docjobs.operators.docimprint import DocimprintSubmitOperator
from airflow_docjobs.operators.finovox import FinovoxSubmitCaseOperator, FinovoxSubmitDocumentOperator
from airflow_docjobs.operators.mindee import MindeeSubmitOperator
from airflow_docjobs.sensors.biros import BirosDocumentSensor
from airflow_docjobs.sensors.docimprint import DocimprintJobSensor
from airflow_docjobs.sensors.finovox import FinovoxResultSensor
from airflow_docjobs.sensors.mindee import MindeeJobSensor

try:  # Airflow: the bundle's folder is on sys.path (see _dies_after_submit.py)
    from _dies_after_submit import dies_after_submit
except ModuleNotFoundError:  # imported by the suite itself: tests/ is on sys.path
    from dags._dies_after_submit import dies_after_submit

if TYPE_CHECKING:
    from pathlib import Path

MINDEE = {"product": "invoices", "version": "v4"}
SERVICE = "svc-deploy"
# The test holds the emulator's clock until every sensor waits, so all of them defer. Sensors keep their
# default retries (2).
WAIT = {"deferrable": True, "poke_interval": 2, "timeout": 900}
# The distributed deployment (deployment_cluster.py) runs the mapped sensors' waits on a triggerer of their
# own: the queue comes from the environment of the processes that parse this file.
MAPPED_WAIT = {**WAIT, "trigger_queue": os.environ.get("DOCJOBS_DEPLOY_TRIGGER_QUEUE") or None}
START = pendulum.datetime(2026, 1, 1, tz="UTC")
# What the test gives the batch DAG: documents per conf entry (cases: case folders of two documents each).
BATCH_SIZES = {"finovox": 52, "cases": 10, "biros": 52, "mindee": 52, "docimprint": 12}
BATCH_SIZES |= {"mindee_mapped": 10, "finovox_mapped": 8}
RESUBMIT_LIST = 8  # Biros documents for the resubmit DAG, and one single Mindee document


def _dag(dag_id: str, **kwargs) -> DAG:
    return DAG(
        dag_id,
        schedule=None,
        start_date=START,
        catchup=False,
        render_template_as_native_obj=True,  # folders and lists arrive from the conf as they are
        max_active_tasks=64,
        **kwargs,
    )


@task
def conf_list(name: str, params=None) -> list[str]:
    """A list from the run conf, to map over."""
    return list(params[name])


with _dag("docjobs_deploy_batch", params=dict.fromkeys(BATCH_SIZES)) as batch_dag:
    # List mode: one submit for a folder, one sensor (one trigger) that waits for every document of it.
    finovox = FinovoxSubmitDocumentOperator(task_id="finovox_submit", file="{{ params.finovox }}")
    FinovoxResultSensor(task_id="finovox_wait", retrieve_token=finovox.output, **WAIT)

    cases = FinovoxSubmitCaseOperator(
        task_id="finovox_case_submit", cases="{{ params.cases }}", use_case="rental"
    )
    FinovoxResultSensor(task_id="finovox_case_wait", retrieve_token=cases.output, analysis="case", **WAIT)

    biros = BirosSubmitOperator(task_id="biros_submit", file="{{ params.biros }}", service_id=SERVICE)
    BirosDocumentSensor(task_id="biros_wait", service_id=SERVICE, document_id=biros.output, **WAIT)

    mindee = MindeeSubmitOperator(task_id="mindee_submit", document="{{ params.mindee }}", **MINDEE)
    MindeeJobSensor(task_id="mindee_wait", job_id=mindee.output, **MINDEE, **WAIT)

    # docimprint has no list submit (a list is one native /v1/jobs batch): one submit per document, and
    # one sensor for the list of their job ids.
    docimprint = DocimprintSubmitOperator.partial(task_id="docimprint_submit").expand(
        source=conf_list.override(task_id="docimprint_sources")("docimprint")
    )
    DocimprintJobSensor(task_id="docimprint_wait", job_id=docimprint.output, **WAIT)

    # Mapped single-document sensors: one list submit, then one sensor (task instance, trigger) per job.
    mindee_each = MindeeSubmitOperator(
        task_id="mindee_mapped_submit", document="{{ params.mindee_mapped }}", **MINDEE
    )
    MindeeJobSensor.partial(task_id="mindee_mapped_wait", **MINDEE, **MAPPED_WAIT).expand(
        job_id=mindee_each.output
    )

    finovox_each = FinovoxSubmitDocumentOperator(
        task_id="finovox_mapped_submit", file="{{ params.finovox_mapped }}"
    )
    FinovoxResultSensor.partial(task_id="finovox_mapped_wait", **MAPPED_WAIT).expand(
        retrieve_token=finovox_each.output
    )


# On try 1 the worker dies (SIGKILL, as the OOM killer or a lost node does) right after the vendor accepted
# the job(s) and the submit recorded them, before the XCom is pushed.
MindeeSubmitKilled = dies_after_submit(MindeeSubmitOperator, how="sigkill")
BirosSubmitKilled = dies_after_submit(BirosSubmitOperator, how="sigkill")

with _dag(
    "docjobs_deploy_resubmit",
    params={"mindee_one": "", "biros_list": ""},
    default_args={"retries": 1, "retry_delay": timedelta(seconds=1)},
) as resubmit_dag:
    one = MindeeSubmitKilled(task_id="mindee_submit", document="{{ params.mindee_one }}", **MINDEE)
    MindeeJobSensor(task_id="mindee_wait", job_id=one.output, **MINDEE, **WAIT)

    listed = BirosSubmitKilled(task_id="biros_submit", file="{{ params.biros_list }}", service_id=SERVICE)
    BirosDocumentSensor(task_id="biros_wait", service_id=SERVICE, document_id=listed.output, **WAIT)


@task_group
def race_pair(source: str) -> None:
    """One document: its submit, then its sensor, which starts as soon as its own submit ends."""
    job = DocimprintSubmitOperator(task_id="submit", source=source)
    DocimprintJobSensor(task_id="wait", job_id=job.output, deferrable=True, poke_interval=1, timeout=300)


# weight_rule "upstream": a sensor outranks the submits still queued, so it starts right after its own
# submit (by default upstream tasks rank first, and every submit would run before any sensor).
with _dag(
    "docjobs_deploy_race", params={"sources": []}, default_args={"weight_rule": "upstream"}
) as race_dag:
    race_pair.expand(source=conf_list.override(task_id="sources")("sources"))


# ---- the runs' inputs (tests/test_deployment.py) -------------------------------------------------------


def make_conf(docs: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The conf of a batch run and of a resubmit run, with the documents they name written under ``docs``."""
    batch: dict[str, Any] = {}
    for name, count in BATCH_SIZES.items():
        if name == "docimprint":  # docimprint takes URLs; the emulator does not fetch them
            batch[name] = [f"https://files.example.com/deploy/doc-{n:03d}.pdf" for n in range(count)]
            continue
        for n in range(count):  # a case is a folder of two documents
            for part in (
                ("case-{:03d}/id_card", "case-{:03d}/payslip") if name == "cases" else ("doc-{:03d}",)
            ):
                write_pdf(docs / name / f"{part.format(n)}.pdf", f"{name} {part.format(n)}")
        batch[name] = str(docs / name)
    write_pdf(docs / "one" / "invoice.pdf", "the single resubmitted document")
    for n in range(RESUBMIT_LIST):
        write_pdf(docs / "resubmit" / f"doc-{n:03d}.pdf", f"resubmit {n}")
    return batch, {"mindee_one": str(docs / "one" / "invoice.pdf"), "biros_list": str(docs / "resubmit")}


def write_pdf(path: Path, label: str) -> None:
    """A one-page PDF whose content is its own (a list submit sends each distinct content once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"%PDF-1.4\n1 0 obj <</Type /Catalog /Pages 2 0 R>> endobj\n2 0 obj <</Type /Pages /Kids [3 0 R]"
        b" /Count 1>> endobj\n3 0 obj <</Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]>> endobj\n"
        + f"% {label}\ntrailer <</Root 1 0 R>>\n%%EOF\n".encode()
    )
