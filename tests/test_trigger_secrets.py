"""
No Finovox retrieve token in a trigger row. Airflow 3.3 stores the trigger kwargs a Task SDK worker sends
as plain JSON (docs/design.md), so the sensor seals references that hold a secret with Airflow's Fernet
key before deferring and the trigger opens them; a missing or invalid ``[core] fernet_key`` is a clear
error at defer time, and a triggerer that cannot read them ends the wait with one, not a crash.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from conftest import PATIENCE, copy_sample, distinct_pdf, load_dags
from sqlalchemy import text
from test_dags import xcoms

from airflow_docjobs.exceptions import DocJobsConfigError
from airflow_docjobs.hooks.finovox import FinovoxHook
from airflow_docjobs.hooks.mindee import MindeeHook
from airflow_docjobs.triggers.job import DocJobTrigger

DAGS = Path(__file__).parent / "dags"
OTHER_KEY = "Q0hBTkdFRC1LRVktZm9yLWEtdHJpZ2dlcmVyLTEyMzQ="  # a valid Fernet key, not the suite's


@pytest.fixture(scope="module")
def dags(airflow_db):
    return load_dags(DAGS / "docjobs_test_dags.py") | load_dags(DAGS / "docjobs_list_dags.py")


@pytest.fixture
def fernet_key(monkeypatch):
    """Set ``[core] fernet_key`` for this test (Airflow caches its Fernet: the cache is cleared around)."""
    from airflow.sdk.crypto import get_fernet

    def set_key(key: str) -> None:
        monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", key)
        get_fernet.cache_clear()

    yield set_key
    monkeypatch.undo()
    get_fernet.cache_clear()


def trigger_rows(after: int) -> list[tuple[str, str]]:
    """The ``trigger`` table's rows newer than id ``after``, as stored: classpath and raw kwargs."""
    from airflow.utils.session import create_session

    with create_session() as session:
        query = text("SELECT classpath, kwargs FROM trigger WHERE id > :after ORDER BY id")
        return [(row[0], row[1]) for row in session.execute(query, {"after": after})]


def last_trigger_id() -> int:
    from airflow.utils.session import create_session

    with create_session() as session:
        return int(session.execute(text("SELECT COALESCE(MAX(id), 0) FROM trigger")).scalar_one())


@pytest.mark.dagtest
@pytest.mark.parametrize("mode", ["single", "list"])
def test_a_deferred_finovox_sensor_leaves_no_token_in_the_trigger_row(
    dags, frozen, tmp_path, monkeypatch, mode
):
    monkeypatch.setenv("AIRFLOW__DOCJOBS__RESULTS_URI", f"file://{tmp_path}/results")
    before = last_trigger_id()
    # The clock stands still until Airflow stored the trigger: the sensor's first poke finds the jobs
    # pending and defers, however loaded the machine.
    stop = threading.Event()

    def thaw_once_deferred() -> None:
        deadline = time.monotonic() + PATIENCE
        while not trigger_rows(before) and time.monotonic() < deadline and not stop.wait(0.05):
            pass
        frozen.state.advance(60)

    thread = threading.Thread(target=thaw_once_deferred, daemon=True)
    thread.start()
    try:
        if mode == "single":
            conf = {"file": str(copy_sample(tmp_path, "doc.pdf")), "name": "doc.pdf"}
            dag_run = dags["docjobs_finovox_deferrable"].test(run_conf=conf)
        else:
            files = [str(distinct_pdf(tmp_path, name)) for name in ("a.pdf", "b.pdf")]
            dag_run = dags["docjobs_list_finovox_deferrable"].test(run_conf={"files": files})
    finally:
        stop.set()
        thread.join()
    assert dag_run.state == "success", {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    references = xcoms(dag_run)[("submit", "return_value")]
    tokens = [references] if mode == "single" else references
    rows = [kwargs for classpath, kwargs in trigger_rows(before) if classpath.endswith("DocJobTrigger")]
    assert rows  # the sensor deferred, and Airflow stored the trigger
    for kwargs in rows:
        assert "sealed" in kwargs
        assert not any(token in kwargs for token in tokens)


def test_references_without_a_secret_stay_plain():
    job = MindeeHook.job_reference("job-1", product="invoices", version="v4")
    assert DocJobTrigger.job_kwargs(MindeeHook, "mindee_default", job=job) == {"job": job}


def test_a_sealed_trigger_serializes_without_the_token_and_reads_it_back():
    job = FinovoxHook.job_reference("fvx-token-0123456789")
    trigger = DocJobTrigger(
        hook_class="airflow_docjobs.hooks.finovox.FinovoxHook",
        conn_id="finovox_default",
        deadline="2030-01-01T00:00:00+00:00",
        poll_interval=1,
        **DocJobTrigger.job_kwargs(FinovoxHook, "finovox_default", job=job),
    )
    _, kwargs = trigger.serialize()
    assert "fvx-token-0123456789" not in repr(kwargs)
    assert DocJobTrigger(**kwargs).references() == ([job], True)


@pytest.mark.parametrize(("key", "problem"), [("", "is not set"), ("not-a-fernet-key", "is not a valid")])
def test_a_missing_or_invalid_fernet_key_fails_the_defer_naming_the_setting(fernet_key, key, problem):
    fernet_key(key)
    job = FinovoxHook.job_reference("fvx-token-0123456789")
    with pytest.raises(DocJobsConfigError, match=rf"\[core\] fernet_key .*{problem}") as raised:
        DocJobTrigger.job_kwargs(FinovoxHook, "finovox_default", job=job)
    assert "'finovox_default'" in str(raised.value)
    assert "fvx-token" not in str(raised.value)


async def test_a_triggerer_with_another_key_ends_the_wait_with_a_clear_error(emulator, fernet_key):
    job = FinovoxHook.job_reference("fvx-token-0123456789")
    sealed = DocJobTrigger.job_kwargs(FinovoxHook, "finovox_default", job=job)
    fernet_key(OTHER_KEY)
    trigger = DocJobTrigger(
        hook_class="airflow_docjobs.hooks.finovox.FinovoxHook",
        conn_id="finovox_default",
        deadline="2030-01-01T00:00:00+00:00",
        poll_interval=0.1,
        **sealed,
    )
    events = [event.payload async for event in trigger.run()]
    assert events == [
        {
            "status": "error",
            "error_type": "DocJobsConfigError",
            "message": events[0]["message"],
        }
    ]
    assert "[core] fernet_key" in events[0]["message"]
