"""
Real DAG runs with ``dag.test()`` (SQLite, in-process task runner, triggers run inline) against the
emulator, for every vendor and both sensor modes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FAST_RETRIES, VENDORS, copy_sample, load_dags
from sqlalchemy import select

from airflow_docjobs.emulator import Fault

DAG_FILE = Path(__file__).parent / "dags" / "docjobs_test_dags.py"
# A secret that cannot appear by accident, so any occurrence in output is a leak.
SECRET = "sk-live-7f3a9c2e51d04b8f"
EXPECTED = {
    "finovox": lambda r: r["global_risk"] in ("low", "medium", "high"),
    "finovox_case": lambda r: r["decision"]["status"] == "approved" and r["share_link"]["url"],
    "mindee": lambda r: r["document"]["inference"]["prediction"] and r["job"]["status"] == "completed",
    "docimprint": lambda r: r["status"] == "complete" and r["bundle_id"],
    "biros": lambda r: r["document"]["status"] == "ACTIVE" and r["document_pages"],
}


@pytest.fixture(scope="session")
def dags(airflow_db):
    return load_dags(DAG_FILE)


@pytest.fixture
def secret_emulator(emulator, monkeypatch):
    emulator.state.settings.update({"api_key": SECRET})
    for vendor in VENDORS:
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{vendor.upper()}_DEFAULT", emulator.connection_json(vendor, **FAST_RETRIES)
        )
    return emulator


def run(dags, dag_id, tmp_path, name="doc.pdf"):
    dag_run = dags[dag_id].test(run_conf={"file": str(copy_sample(tmp_path, name)), "name": name})
    return dag_run, {ti.task_id: ti for ti in dag_run.get_task_instances()}


def xcoms(dag_run) -> dict[tuple[str, str], object]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.scalars(
            select(XComModel).where(XComModel.dag_id == dag_run.dag_id, XComModel.run_id == dag_run.run_id)
        ).all()
        return {(row.task_id, row.key): XComModel.deserialize_value(row) for row in rows}


@pytest.mark.parametrize("mode", ["deferrable", "poke"])
@pytest.mark.parametrize("vendor", list(EXPECTED))
def test_happy_path(dags, secret_emulator, tmp_path, capfd, vendor, mode):
    dag_run, tis = run(dags, f"docjobs_{vendor}_{mode}", tmp_path)
    assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}
    values = xcoms(dag_run)
    result = values[("wait", "return_value")]
    assert EXPECTED[vendor](result)
    reference = values[("submit", "return_value")]
    assert isinstance(reference, str) and reference
    if vendor == "finovox_case":
        assert values[("wait", "_link_FinovoxShareLink")] == result["share_link"]["url"]
    output = capfd.readouterr()
    logs = output.out + output.err
    assert SECRET not in logs and SECRET not in json.dumps(list(values.values()), default=str)
    if vendor.startswith("finovox"):
        assert reference not in logs  # the retrieve token is masked
    if mode == "deferrable":
        assert "DocJobTrigger" in logs  # the wait really ran in a trigger


@pytest.mark.parametrize("mode", ["deferrable", "poke"])
@pytest.mark.parametrize("vendor", ["finovox_case", "mindee", "docimprint", "biros"])
def test_vendor_failure_fails_at_once_without_retry(dags, emulator, tmp_path, capfd, vendor, mode):
    dag_run, tis = run(dags, f"docjobs_{vendor}_{mode}", tmp_path, name="fail.pdf")
    assert dag_run.state == "failed"
    assert tis["wait"].state == "failed" and tis["wait"].try_number == 1  # retries=2 left unused
    logs = capfd.readouterr()
    assert "VendorJobFailedError" in logs.out + logs.err


@pytest.mark.parametrize("mode", ["deferrable", "poke"])
def test_timeout_fails_as_a_sensor_timeout(dags, emulator, tmp_path, capfd, mode):
    _, tis = run(dags, f"docjobs_timeout_{mode}", tmp_path, name="never.pdf")
    assert tis["wait"].state == "failed" and tis["wait"].try_number == 1
    logs = capfd.readouterr()
    assert "AirflowSensorTimeout" in logs.out + logs.err


def test_transient_faults_are_survived(dags, emulator, tmp_path):
    # 5 failed requests: more than one poll's 3 attempts, so the trigger itself must count and go on.
    emulator.state.faults.append(Fault(vendor="docimprint", path="/v1/jobs/", status=503, times=5))
    emulator.state.faults.append(
        Fault(vendor="docimprint", path="/v1/jobs/", status=200, body="<html>", times=1)
    )
    dag_run, _ = run(dags, "docjobs_docimprint_deferrable", tmp_path)
    assert dag_run.state == "success"
    assert all(fault.used_up() for fault in emulator.state.faults)


def test_durable_submit_reuses_its_job_on_retry(dags, emulator, tmp_path, capfd):
    dag_run, tis = run(dags, "docjobs_durable_submit", tmp_path)
    assert dag_run.state == "success"
    assert tis["submit"].try_number == 2
    submits = [r for r in emulator.state.requests if r["method"] == "POST"]
    assert len(submits) == 1, "the retry paid for a second job"
    assert "Reconnecting to existing job" in capfd.readouterr().out  # Airflow's ResumableJobMixin reused it


def test_reschedule_mode_frees_the_worker_between_polls(dags, emulator, tmp_path):
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session

    dag_run, tis = run(dags, "docjobs_docimprint_reschedule", tmp_path)
    assert dag_run.state == "success"
    assert xcoms(dag_run)[("wait", "return_value")]["status"] == "complete"
    with create_session() as session:
        reschedules = session.scalars(
            select(TaskReschedule).where(TaskReschedule.ti_id == tis["wait"].id)
        ).all()
    assert reschedules, "the sensor never gave its worker slot back"


def test_a_vendor_that_stays_down_ends_a_rescheduling_sensor(dags, emulator, tmp_path, capfd):
    """Every poke of a rescheduling sensor is a new instance: the count of failed polls must outlive it."""
    emulator.state.faults.append(Fault(vendor="docimprint", path="/v1/jobs/", status=503))
    _, tis = run(dags, "docjobs_reschedule_vendor_down", tmp_path)
    assert tis["wait"].state == "failed"
    logs = capfd.readouterr()
    assert "VendorTransientError" in logs.out + logs.err and "AirflowSensorTimeout" not in logs.out + logs.err
    polls = [r for r in emulator.state.requests if r["method"] == "GET"]
    # Two failed pokes (three attempts each) per try: the count survived the reschedule, not the timeout.
    assert len(polls) == 2 * 3 * tis["wait"].try_number
