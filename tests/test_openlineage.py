"""
OpenLineage: real ``dag.test()`` runs against the emulator, with the ``apache-airflow-providers-openlineage``
listener emitting through its file transport, and the COMPLETE events read back from that file.

``dag.test()`` in Airflow 3.3 runs each task in-process (``InProcessTestSupervisor``), and the task
runner's ``finalize`` calls the task SDK's listener manager (``airflow.sdk.listener``), so a registered
``OpenLineageListener`` emits the usual events from the test's own process: no mock, no extractor called
by hand. What a deployment does differently is only how that listener gets registered: the provider's
plugin adds it when Airflow loads plugins, once per process, and only if a transport is configured then.
A test process loads them once, before any transport is set (the fixture asks for the listener manager
first, so this holds even when this module runs alone), and they stay without OpenLineage. So the
``lineage`` fixture does what the plugin does (``add_listener`` of a fresh ``OpenLineageListener``, taken
off again afterwards) and configures it as a deployment would, through ``AIRFLOW__OPENLINEAGE__TRANSPORT``
(a file transport) and ``AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD`` (emit in a thread, not a fork of the
test process).
``test_a_deployment_configured_by_environment_reports_lineage`` checks the plugin path itself, with
``airflow dags test`` in a fresh process configured only by environment variables.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import copy_sample, distinct_pdf, load_dags
from pg import postgres_conn, postgres_server  # noqa: F401 - fixtures
from test_dags import xcoms

from airflow_docjobs.lineage import dataset_name

pytestmark = pytest.mark.dagtest
DAG_FILE = Path(__file__).parent / "dags" / "docjobs_lineage_dags.py"
# Where docjobs_lineage_mindee ingests, unless a test says otherwise: the ``database`` fixture's SQLite.
INGEST = {
    "database": "lineage_db",
    "results_table": "docjobs_results",
    "fields_table": "docjobs_fields",
    "schema": None,
}
# A key that cannot appear by accident: anywhere in the events, it is a leak.
API_KEY = "sk-live-0b9e4f7a2c61d835"


class Events:
    """The OpenLineage events of the file transport, read back."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def all(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def complete(self, job: str) -> dict:
        """The one COMPLETE event of a task (``dag_id.task_id``)."""
        found = [e for e in self.all() if e["eventType"] == "COMPLETE" and e["job"]["name"] == job]
        assert len(found) == 1, [(e["eventType"], e["job"]["name"]) for e in self.all()]
        return found[0]


def named(datasets: list[dict]) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in datasets]


@pytest.fixture(scope="module")
def dags(airflow_db):
    return load_dags(DAG_FILE)


@pytest.fixture
def lineage(tmp_path, monkeypatch) -> Events:
    """The provider's own listener on the task runner, emitting every event to a file."""
    from airflow.providers.openlineage.plugins.listener import OpenLineageListener
    from airflow.sdk.listener import get_listener_manager

    manager = get_listener_manager()  # plugins load here if nothing loaded them yet: still disabled
    events = Events(tmp_path / "openlineage.jsonl")
    transport = {"type": "file", "log_file_path": str(events.path), "append": True}
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__TRANSPORT", json.dumps(transport))
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD", "True")
    listener = OpenLineageListener()
    manager.add_listener(listener)
    yield events
    manager.pm.unregister(listener)


@pytest.fixture
def results_uri(tmp_path, monkeypatch) -> str:
    uri = f"file://{tmp_path / 'results'}"
    monkeypatch.setenv("AIRFLOW__DOCJOBS__RESULTS_URI", uri)
    return uri


@pytest.fixture
def database(tmp_path, monkeypatch) -> Path:
    """The ingest's SQLite file, behind the ``lineage_db`` connection."""
    path = tmp_path / "warehouse.db"
    monkeypatch.setenv("AIRFLOW_CONN_LINEAGE_DB", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return path


def run(dags, dag_id: str, **conf):
    # Every param each time: in one process, a run's conf stays in the DAG's params for the next run.
    if dag_id == "docjobs_lineage_mindee":
        conf = INGEST | conf
    dag_run = dags[dag_id].test(run_conf=conf)
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert dag_run.state == "success", states
    return dag_run


def test_a_single_file_submit_reports_its_document(dags, emulator, lineage, results_uri, database, tmp_path):
    document = copy_sample(tmp_path, "invoice.pdf")
    run(dags, "docjobs_lineage_mindee", document=str(document))
    event = lineage.complete("docjobs_lineage_mindee.submit")
    assert named(event["inputs"]) == [("file", str(document))]
    assert event["outputs"] == []  # the vendor's job is not a dataset


def test_a_folder_submit_reports_each_document_it_submitted(
    dags, emulator, lineage, results_uri, database, tmp_path
):
    inbox = tmp_path / "inbox"
    for name in ("b.pdf", "sub/c.pdf", "a.pdf", ".hidden/x.pdf", "copy/a.pdf"):
        distinct_pdf(inbox, name)
    (inbox / "copy" / "a.pdf").write_bytes((inbox / "a.pdf").read_bytes())  # submitted once, read twice
    (inbox / "notes.txt").write_text("not a document")  # rejected before any request: not an input
    run(dags, "docjobs_lineage_mindee", document=f"{inbox}/")
    event = lineage.complete("docjobs_lineage_mindee.submit")
    expected = ["a.pdf", "b.pdf", "copy/a.pdf", "sub/c.pdf"]
    assert named(event["inputs"]) == [("file", str(inbox / name)) for name in expected]


def test_a_list_is_reported_once_per_document(dags, emulator, lineage, results_uri, database, tmp_path):
    one, two = distinct_pdf(tmp_path, "one.pdf"), distinct_pdf(tmp_path, "two.pdf")
    three = distinct_pdf(tmp_path, "three.pdf")
    relative = os.path.relpath(two)  # the same file, named relative to the worker's directory
    documents = [str(one), str(two), relative, three.as_uri()]  # a file:// URI is a local file too
    run(dags, "docjobs_lineage_mindee", document=documents)
    event = lineage.complete("docjobs_lineage_mindee.submit")
    assert named(event["inputs"]) == [("file", str(one)), ("file", str(two)), ("file", str(three))]


@pytest.mark.parametrize(
    "uri",
    ["s3://inbox/2026-11-24/invoice.pdf", "s3://aws_prod@inbox/2026/a%20b.pdf", "gs://scans/x/y.pdf"],
)
def test_object_storage_uris_are_named_as_airflow_names_them(uri):
    """No object store runs here (no filesystem for s3:// or gs:// is installed): the names alone."""
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    path = ObjectStoragePath(uri)  # parses only: no filesystem is opened
    # The Airflow connection id before "@" is not part of the dataset, as ObjectStoragePath says.
    assert dataset_name(uri) == (path.namespace, path.key)
    assert dataset_name(uri)[0] in ("s3://inbox", "gs://scans")


def test_inline_content_is_no_dataset():
    assert [dataset_name(v) for v in (b"%PDF", "base64:JVBERi0=", "data:application/pdf;base64,JV")] == [
        None,
        None,
        None,
    ]


def test_a_mindee_url_is_an_https_dataset(dags, emulator, lineage, results_uri, database):
    url = "https://files.example.com:8443/inbox/invoice.pdf?X-Amz-Signature=deadbeef0042#page=2"
    run(dags, "docjobs_lineage_mindee", document=url)
    event = lineage.complete("docjobs_lineage_mindee.submit")
    assert named(event["inputs"]) == [("https://files.example.com:8443", "/inbox/invoice.pdf")]
    # A presigned URL's signature is a secret. (Airflow's own run facet still shows the run conf.)
    assert "deadbeef0042" not in json.dumps(event["inputs"])


def test_docimprint_sources_are_https_datasets(dags, emulator, lineage):
    sources = [
        "https://evidence.example.org/leases/a.pdf",
        "https://user:hunter2@evidence.example.org/leases/b.pdf",
        "https://mirror.example.net/a.pdf",
    ]
    run(dags, "docjobs_lineage_docimprint", source=sources)  # one docimprint batch job of three sources
    event = lineage.complete("docjobs_lineage_docimprint.submit")
    assert named(event["inputs"]) == [
        ("https://evidence.example.org", "/leases/a.pdf"),
        ("https://evidence.example.org", "/leases/b.pdf"),
        ("https://mirror.example.net", "/a.pdf"),
    ]
    assert "hunter2" not in json.dumps(event["inputs"])


def test_a_case_batch_reports_the_files_of_each_case(
    dags, emulator, vendor_conn, lineage, results_uri, tmp_path
):
    emulator.state.settings.update({"api_key": API_KEY})
    vendor_conn("finovox")
    for name in ("case_1/payslip.pdf", "case_1/id_card.pdf", "case_1/old/ignored.pdf", "case_2/lease.pdf"):
        distinct_pdf(tmp_path / "cases", name)
    (tmp_path / "cases" / "case_2" / "applicant.json").write_text('{"applicants": []}')
    cases = [str(tmp_path / "cases" / "case_1"), str(tmp_path / "cases" / "case_2")]
    dag_run = run(dags, "docjobs_lineage_cases", cases=cases)
    event = lineage.complete("docjobs_lineage_cases.submit")
    # A case folder uploads its own files, its JSON forms among them; not those of its subfolders.
    expected = ["case_1/id_card.pdf", "case_1/payslip.pdf", "case_2/applicant.json", "case_2/lease.pdf"]
    assert named(event["inputs"]) == [("file", str(tmp_path / "cases" / name)) for name in expected]
    # Neither the key nor a retrieve token (each grants access to a result by itself) is in any event.
    tokens = xcoms(dag_run)[("submit", "return_value")]
    text = lineage.path.read_text()
    assert len(tokens) == 2
    assert not any(secret in text for secret in [API_KEY, *tokens])


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_the_ingest_reports_the_tables_it_writes(
    dags, emulator, lineage, results_uri, tmp_path, monkeypatch, request, kind
):
    documents = tmp_path / "inbox"
    for name in ("a.pdf", "b.pdf"):
        distinct_pdf(documents, name)
    if kind == "sqlite":
        # Tables and schema configured ("main" is SQLite's name for the file's own schema).
        path = tmp_path / "warehouse.db"
        conn = json.dumps({"conn_type": "sqlite", "host": str(path)})
        tables = {"results_table": "invoices", "fields_table": "invoice_fields", "schema": "main"}
        expected = ["main.invoices", "main.invoice_fields"]
    else:
        # The default tables, in the schema the connection writes to: {database}.{schema}.{table}.
        conn = request.getfixturevalue("postgres_conn")
        settings = json.loads(conn)
        tables = {"results_table": "docjobs_results", "fields_table": "docjobs_fields", "schema": None}
        expected = [
            f"{settings['schema']}.public.docjobs_results",
            f"{settings['schema']}.public.docjobs_fields",
        ]
    monkeypatch.setenv("AIRFLOW_CONN_LINEAGE_DB", conn)
    run(dags, "docjobs_lineage_mindee", document=f"{documents}/", **tables)
    event = lineage.complete("docjobs_lineage_mindee.ingest")
    outputs = named(event["outputs"])
    assert [name for _, name in outputs] == expected
    if kind == "sqlite":
        assert {namespace for namespace, _ in outputs} == {f"sqlite://{path}"}
    else:
        # The very datasets common-sql's own operator reports for a statement writing these tables.
        from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator

        sql = "INSERT INTO docjobs_results SELECT * FROM docjobs_fields"
        common_sql = SQLExecuteQueryOperator(task_id="sql", conn_id="lineage_db", sql=sql)
        facets = common_sql.get_openlineage_facets_on_start()
        assert [(d.namespace, d.name) for d in facets.outputs + facets.inputs] == outputs
        assert outputs[0][0].startswith("postgres://")
        assert outputs[0][0].endswith(f":{settings['port']}")
    submit = lineage.complete("docjobs_lineage_mindee.submit")
    assert named(submit["inputs"]) == [("file", str(documents / n)) for n in ("a.pdf", "b.pdf")]


def test_a_deployment_configured_by_environment_reports_lineage(
    airflow_db, emulator, results_uri, database, tmp_path
):
    """``airflow dags test`` in a new process: the provider's plugin registers its listener by itself."""
    document = copy_sample(tmp_path, "invoice.pdf")
    events = Events(tmp_path / "events.jsonl")
    transport = {"type": "file", "log_file_path": str(events.path), "append": True}
    env = os.environ | {
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "docjobs-test",
    }
    conf = json.dumps({"document": str(document), "database": "lineage_db"})
    airflow = Path(sys.executable).parent / "airflow"
    done = subprocess.run(
        [str(airflow), "dags", "test", "docjobs_lineage_mindee", "--conf", conf],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    submit = events.complete("docjobs_lineage_mindee.submit")
    assert submit["job"]["namespace"] == "docjobs-test"
    assert named(submit["inputs"]) == [("file", str(document))]
    ingest = events.complete("docjobs_lineage_mindee.ingest")
    assert named(ingest["outputs"]) == [
        (f"sqlite://{database}", "docjobs_results"),
        (f"sqlite://{database}", "docjobs_fields"),
    ]
