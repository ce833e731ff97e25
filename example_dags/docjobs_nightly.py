"""
### docjobs_nightly: the day's documents, analysed once each, in the warehouse by morning

Every night this DAG takes the documents that landed in `{inbox}/{ds}/` (one folder per day), sends each
to the analysis that fits it, waits for the vendors in the triggerer and writes one row per document to
`docjobs_results` (and one per extracted field to `docjobs_fields`) in the database of
`database_conn_id`. Failed and rejected documents get a row too, with their error: they are the ones a
human should look at.

**Routing: the subfolder decides.**

| subfolder of `{inbox}/{ds}/` | what is one document | analysis |
|---|---|---|
| `invoices/` | each file | Mindee `invoices` v4 prediction |
| `payslips/` | each file | Finovox document (fraud risk) analysis |
| `rental/` | each subfolder (a case: its files, `*.json` applicant forms ride along) | Finovox `rental` case decision |
| `id_cards/` | each file | myBiros service `id-cards` |
| `evidence/` | each line of each `*.url` file (one public URL; `#` starts a comment) | docimprint extract |

Anything else in the day's folder (a file straight in it, a misspelled subfolder such as `invoice/`, a
loose file in `rental/` outside any case, a file in `evidence/` that is not a `*.url` list) is *unrouted*:
the `unrouted` task names every such file in a warning, the run's `summary` counts them, and with the
param `fail_on_unrouted` the run fails on them (after every route has done its work). Edit `ROUTES` below
to route differently.

**Never paying twice.** Before submitting, each route's `new_*` task hashes its documents (SHA-256 of the
content; a case's files; a URL's text) and drops every document whose hash already has a row for that
vendor and analysis, whatever the night it came in, under whatever name. A document that *failed* or was
*rejected* is not retried either: a failed job may have been billed (only docimprint says a failed job
is free), and it fails again the same way until someone looks at it. Fix it, then run the day again with
`retry_failed` set. When nothing is new, the `new_*` task short-circuits and its route's submit, wait and
ingest are skipped: a re-run of a night costs nothing and leaves the tables as they were. The short circuit
skips only its direct downstream tasks (`ignore_downstream_trigger_rules=False`), so the `all_done`
summary still runs on such a re-run.

**Params** (also as run conf:
`airflow dags test docjobs_nightly 2026-11-24 -c '{"inbox": "s3://bucket/inbox", "database_conn_id": "warehouse"}'`):
`inbox`, any `ObjectStoragePath` URI (default: the sample inbox shipped in `example_dags/data/inbox`);
`database_conn_id`, any common-sql connection (`docjobs_db`, when not defined, is the SQLite file
`$AIRFLOW_HOME/docjobs/docjobs.db`); `retry_failed`; `fail_on_unrouted`.

The schedule is `@daily` with data intervals, so the run after midnight has the logical date of the day
that just ended and reads that day's folder (`airflow dags test docjobs_nightly 2026-11-24` reads
`2026-11-24/` too). Catch-up is off; to process missed nights, backfill them: re-running a night is free.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import pendulum
from airflow.providers.common.compat.sdk import DAG, AirflowFailException, Param, task

from airflow_docjobs.hooks.inputs import as_path, documents_under
from airflow_docjobs.ingest import DEFAULT_CONN_ID, mindee_analysis, new_documents
from airflow_docjobs.ingest.tables import STATES
from airflow_docjobs.operators.biros import BirosSubmitOperator
from airflow_docjobs.operators.docimprint import DocimprintSubmitOperator
from airflow_docjobs.operators.finovox import FinovoxSubmitCaseOperator, FinovoxSubmitDocumentOperator
from airflow_docjobs.operators.ingest import DocJobsIngestOperator
from airflow_docjobs.operators.mindee import MindeeSubmitOperator
from airflow_docjobs.sensors.biros import BirosDocumentSensor
from airflow_docjobs.sensors.docimprint import DocimprintJobSensor
from airflow_docjobs.sensors.finovox import FinovoxResultSensor
from airflow_docjobs.sensors.mindee import MindeeJobSensor

try:
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:  # older Task SDKs keep it in core
    from airflow.timetables.interval import CronDataIntervalTimetable

log = logging.getLogger(__name__)
SAMPLE_INBOX = (Path(__file__).parent / "data" / "inbox").as_uri()
MINDEE_PRODUCT = {"product": "invoices", "version": "v4"}
BIROS_SERVICE = "id-cards"
# The vendors' advised poll intervals by default; the demo and tests against the emulator set a short one.
POKE_INTERVAL = float(os.environ.get("DOCJOBS_NIGHTLY_POKE_INTERVAL") or 0) or None
WAIT: dict[str, Any] = {
    "deferrable": True,
    "timeout": 6 * 3600,
    # Failed and rejected documents are ingested with their error, so they must not fail the wait.
    "max_failed": 1_000_000,
    **({"poke_interval": POKE_INTERVAL} if POKE_INTERVAL else {}),
}


class Route(NamedTuple):
    """Where a kind of document lands in the day's folder, what one document is, what analyses it."""

    folder: str
    unit: str  # "file": each file; "case": each subfolder; "url": each line of *.url files
    vendor: str
    analysis: str


ROUTES = {
    route.folder: route
    for route in (
        Route("invoices", "file", "mindee", mindee_analysis(**MINDEE_PRODUCT)),
        Route("payslips", "file", "finovox", "document"),
        Route("rental", "case", "finovox", "case"),
        Route("id_cards", "file", "biros", BIROS_SERVICE),
        Route("evidence", "url", "docimprint", "extract"),
    )
}


def candidates(route: Route, inbox: str, ds: str) -> list[str]:
    """Every document of one route in the day's folder, sorted; none when the folder is not there."""
    folder = f"{inbox.rstrip('/')}/{ds}/{route.folder}"
    root = as_path(folder)
    if not root.is_dir():
        return []
    if route.unit == "case":
        scheme = "://" in folder
        return sorted(
            f"{folder}/{p.name}" if scheme else str(p)
            for p in root.iterdir()
            if p.is_dir() and not p.name.startswith(".")
        )
    found = documents_under(folder + "/")
    if route.unit == "file":
        return found
    urls = []
    for listing in (doc for doc in found if doc.endswith(".url")):
        for line in as_path(listing).read_text().splitlines():
            if (line := line.strip()) and not line.startswith("#"):
                urls.append(line)
    return urls


def routed(relative: PurePosixPath) -> bool:
    """Whether a file of the day's folder (its path relative to it) belongs to a route's documents."""
    route = ROUTES.get(relative.parts[0]) if len(relative.parts) > 1 else None
    if route is None:
        return False
    if route.unit == "case":
        return len(relative.parts) > 2  # inside a case's subfolder
    return route.unit == "file" or relative.suffix == ".url"


def unrouted_files(inbox: str, ds: str) -> list[str]:
    """Every file of the day's folder that no route takes, sorted (hidden files and folders skipped)."""
    day = f"{inbox.rstrip('/')}/{ds}"
    if not as_path(day).is_dir():
        return []
    return [doc for doc in documents_under(day + "/") if not routed(PurePosixPath(doc[len(day) + 1 :]))]


with DAG(
    dag_id="docjobs_nightly",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params={
        "inbox": Param(SAMPLE_INBOX, type="string", description="ObjectStoragePath URI of the inbox"),
        "database_conn_id": Param(DEFAULT_CONN_ID, type="string", description="common-sql connection id"),
        "retry_failed": Param(
            False, type="boolean", description="submit failed and rejected documents again"
        ),
        "fail_on_unrouted": Param(
            False, type="boolean", description="fail the run when the day's folder holds unrouted files"
        ),
    },
    tags=["docjobs", "ingestion"],
    doc_md=__doc__,
) as dag:

    @task
    def unrouted(params: dict | None = None, ds: str | None = None) -> list[str]:
        """The day's files that no route takes, each named in a warning: they are not analysed."""
        found = unrouted_files((params or {})["inbox"], ds or "")
        for path in found:
            log.warning(
                "Unrouted, not analysed: %s (no route for its place; routes: %s)", path, ", ".join(ROUTES)
            )
        return found

    # Only the route's own next tasks are skipped when nothing is new: the all_done summary still runs.
    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def select_new(folder: str, params: dict | None = None, ds: str | None = None) -> list[str]:
        """The route's documents of the day that no row holds yet; none skips the route's other tasks."""
        route, params = ROUTES[folder], params or {}
        return new_documents(
            candidates(route, params["inbox"], ds or ""),
            vendor=route.vendor,
            analysis=route.analysis,
            conn_id=params["database_conn_id"],
            retry_failed=bool(params.get("retry_failed")),
        )

    @task(trigger_rule="all_done")
    def summary(params: dict | None = None, ti: Any = None) -> dict[str, Any]:
        """The night in one line per route, and the unrouted files; fails the run on them if asked to."""
        counts = {}
        for name in ROUTES:
            ingested = ti.xcom_pull(task_ids=f"ingest_{name}") or {}
            counts[name] = {state: ingested.get(state, 0) for state in ("documents", *STATES)}
            log.info("%s: %s", name, ", ".join(f"{n} {what}" for what, n in counts[name].items()))
        stray = ti.xcom_pull(task_ids="unrouted") or []
        log.info(
            "unrouted: %d file(s)%s", len(stray), " (named in the unrouted task's warnings)" if stray else ""
        )
        if stray and (params or {}).get("fail_on_unrouted"):
            raise AirflowFailException(
                f"{len(stray)} unrouted file(s) in the day's folder (fail_on_unrouted is set): {stray[:5]}"
            )
        return {"routes": counts, "unrouted": len(stray)}

    night_summary = summary()
    unrouted() >> night_summary
    for route in ROUTES.values():
        name = route.folder
        documents = select_new.override(task_id=f"new_{name}")(name)
        if name == "invoices":
            submit = MindeeSubmitOperator(task_id=f"submit_{name}", document=documents, **MINDEE_PRODUCT)
            wait = MindeeJobSensor(task_id=f"wait_{name}", job_id=submit.output, **MINDEE_PRODUCT, **WAIT)
        elif name == "payslips":
            submit = FinovoxSubmitDocumentOperator(task_id=f"submit_{name}", file=documents)
            wait = FinovoxResultSensor(task_id=f"wait_{name}", retrieve_token=submit.output, **WAIT)
        elif name == "rental":
            submit = FinovoxSubmitCaseOperator(task_id=f"submit_{name}", cases=documents, use_case="rental")
            wait = FinovoxResultSensor(
                task_id=f"wait_{name}", retrieve_token=submit.output, analysis="case", **WAIT
            )
        elif name == "id_cards":
            submit = BirosSubmitOperator(task_id=f"submit_{name}", file=documents, service_id=BIROS_SERVICE)
            wait = BirosDocumentSensor(
                task_id=f"wait_{name}", service_id=BIROS_SERVICE, document_id=submit.output, **WAIT
            )
        else:
            # docimprint takes one URL per job and has no list mode: one mapped submit per URL.
            submit = DocimprintSubmitOperator.partial(task_id=f"submit_{name}").expand(source=documents)
            wait = DocimprintJobSensor(task_id=f"wait_{name}", job_id=submit.output, **WAIT)
        (
            DocJobsIngestOperator(
                task_id=f"ingest_{name}",
                results=wait.output,
                conn_id="{{ params.database_conn_id }}",
                vendor=route.vendor,
                analysis=route.analysis,
                # Mapped docimprint outcomes do not say which URL they were: the list they were mapped over does.
                inputs=documents if route.unit == "url" else None,
            )
            >> night_summary
        )
