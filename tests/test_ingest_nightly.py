"""
``docjobs_nightly`` end to end in ``dag.test()`` against the emulator: the first night ingests every
document, a re-run of the night submits nothing and changes nothing, and a later night pays only for what
it has not seen.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pendulum
import pytest
from conftest import load_dags
from pg import postgres_conn, postgres_server  # noqa: F401 - fixtures
from test_dags import xcoms
from test_ingest import checksum

from airflow_docjobs.ingest import ResultsDatabase

EXAMPLES = Path(__file__).parent.parent / "example_dags"
SAMPLE_DAY = EXAMPLES / "data" / "inbox" / "2026-11-24"
NIGHT = pendulum.datetime(2026, 11, 24, tz="UTC")
SUBMIT_PATHS = (
    "/finovox/analyse",
    "/finovox/case",
    "/predict_async",
    "/async-predict",
    "/docimprint/v1/extract",
)
ROUTES = ("invoices", "payslips", "rental", "id_cards", "evidence")
CONN_ID = "nightly_db"


@pytest.fixture(scope="module")
def nightly(airflow_db):
    # Read when the DAG file is parsed: jobs end at once in the emulator, the triggers need not wait 30 s.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOCJOBS_NIGHTLY_POKE_INTERVAL", "0.2")
        return load_dags(EXAMPLES / "docjobs_nightly.py")["docjobs_nightly"]


@pytest.fixture
def warehouse(request, emulator, tmp_path, monkeypatch) -> ResultsDatabase:
    """The night's database: SQLite, or with ``indirect`` parametrization a real PostgreSQL."""
    emulator.state.settings.update({"processing_seconds": 0})
    monkeypatch.setenv("AIRFLOW__DOCJOBS__RESULTS_URI", f"file://{tmp_path / 'results'}")
    if getattr(request, "param", "sqlite") == "sqlite":
        conn = json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "w.db")})
    else:
        conn = request.getfixturevalue("postgres_conn")
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", conn)
    return ResultsDatabase(CONN_ID)


def night(dag, logical_date=NIGHT, **conf):
    dag_run = dag.test(logical_date=logical_date, run_conf={"database_conn_id": CONN_ID, **conf})
    states = {(ti.task_id, ti.map_index): ti.state for ti in dag_run.get_task_instances()}
    assert dag_run.state == "success", states
    return {task_id: state for (task_id, _), state in states.items()}


def submits(emulator) -> list[dict]:
    return [r for r in emulator.state.requests if r["method"] == "POST" and r["path"].endswith(SUBMIT_PATHS)]


@pytest.mark.parametrize("warehouse", ["sqlite", "postgres"], indirect=True)
def test_the_first_night_ingests_and_a_rerun_pays_nothing(nightly, emulator, warehouse):
    states = night(nightly)
    assert all(states[f"ingest_{route}"] == "success" for route in ROUTES), states
    rows = warehouse.hook.get_records(
        f"SELECT vendor, analysis, state, COUNT(*) FROM {warehouse.results} GROUP BY vendor, analysis, state"
    )
    assert sorted(tuple(r) for r in rows) == [
        ("biros", "id-cards", "succeeded", 2),
        ("docimprint", "extract", "succeeded", 2),
        ("finovox", "case", "succeeded", 2),
        ("finovox", "document", "succeeded", 2),
        ("mindee", "mindee/invoices/v4", "failed", 1),  # the "failed scan": a human should look at it
        ("mindee", "mindee/invoices/v4", "succeeded", 2),
    ]
    paid, before = len(submits(emulator)), checksum(warehouse)
    assert paid == 11

    states = night(nightly)
    assert len(submits(emulator)) == paid  # no vendor job: nothing submitted, nothing to pay
    assert checksum(warehouse) == before
    # Nothing new: each route's short circuit skipped its submit, wait and ingest; the run still succeeded.
    for route in ROUTES:
        assert states[f"new_{route}"] == "success"
        assert {states[f"{step}_{route}"] for step in ("submit", "wait", "ingest")} == {"skipped"}


def test_a_later_night_pays_only_for_what_it_has_not_seen(nightly, emulator, warehouse, tmp_path):
    inbox = tmp_path / "inbox"
    shutil.copytree(SAMPLE_DAY / "invoices", inbox / "2026-11-24" / "invoices")
    night(nightly, inbox=str(inbox))
    assert len(submits(emulator)) == 3
    # The next day brings one invoice seen yesterday under another name, and one new one.
    day = inbox / "2026-11-25" / "invoices"
    day.mkdir(parents=True)
    shutil.copy(SAMPLE_DAY / "invoices" / "invoice_2026_11_042.pdf", day / "copy_of_042.pdf")
    (day / "invoice_2026_11_045.pdf").write_bytes(
        b"%PDF-1.4\n% new\n" + (day / "copy_of_042.pdf").read_bytes()
    )
    night(nightly, NIGHT.add(days=1), inbox=inbox.as_uri())  # an ObjectStoragePath URI this time
    sent = submits(emulator)
    assert len(sent) == 4
    names = warehouse.hook.get_records(
        f"SELECT input_name FROM {warehouse.results} WHERE state = 'succeeded'"
    )
    assert any(name.endswith("2026-11-25/invoices/invoice_2026_11_045.pdf") for (name,) in names)
    # The failed scan is left for a human, until asked to try it again.
    night(nightly, inbox=str(inbox), retry_failed=True)
    assert len(submits(emulator)) == 5


def test_unrouted_files_are_named_counted_and_can_fail_the_run(
    nightly, emulator, warehouse, tmp_path, caplog, capfd
):
    day = tmp_path / "inbox" / "2026-11-24"
    sample = SAMPLE_DAY / "invoices" / "invoice_2026_11_042.pdf"
    stray = [day / "stray.pdf", day / "invoice" / "misspelled.pdf", day / "rental" / "loose.pdf"]
    for path in stray:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(sample, path)
    conf = {"database_conn_id": CONN_ID, "inbox": str(day.parent), "fail_on_unrouted": True}
    dag_run = nightly.test(logical_date=NIGHT, run_conf=conf)
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert dag_run.state == "failed", states
    # No route had anything: every short circuit skipped its route, and the all_done summary ran all the same.
    assert {state for task, state in states.items() if task.startswith(("submit_", "ingest_"))} == {"skipped"}
    assert states["summary"] == "failed"
    assert sorted(xcoms(dag_run)[("unrouted", "return_value")]) == sorted(str(p) for p in stray)
    logs = caplog.text + "".join(capfd.readouterr())  # the DAG file's own logger, and the task's
    for path in stray:
        assert f"Unrouted, not analysed: {path}" in logs
    assert "unrouted: 3 file(s)" in logs
    assert "3 unrouted file(s) in the day's folder (fail_on_unrouted is set)" in logs
    assert submits(emulator) == []
