"""
The provider's retry policy (Airflow >= 3.3) in real dag.test() runs: a refused key fails at once, a
transient failure is retried; and soft_fail holds on the first poll of a deferrable sensor.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FAST_RETRIES, load_dags

from airflow_docjobs.emulator import Fault
from airflow_docjobs.retry import docjobs_retry_policy

DAG_FILE = Path(__file__).parent / "dags" / "docjobs_retry_dags.py"
pytestmark = pytest.mark.skipif(docjobs_retry_policy() is None, reason="retry policies need Airflow >= 3.3")


@pytest.fixture(scope="module")
def dags(airflow_db):
    return load_dags(DAG_FILE)


def submit_ti(dag_run):
    return {ti.task_id: ti for ti in dag_run.get_task_instances()}["submit"]


@pytest.mark.parametrize(
    ("dag_id", "tries"), [("docjobs_retry_policy", 1), ("docjobs_no_retry_policy", 3)], ids=["policy", "none"]
)
def test_a_refused_key_fails_without_spending_retries(dags, emulator, monkeypatch, dag_id, tries):
    conn = json.loads(emulator.connection_json("docimprint", **FAST_RETRIES)) | {"password": "wrong-key"}
    monkeypatch.setenv("AIRFLOW_CONN_DOCIMPRINT_DEFAULT", json.dumps(conn))
    dag_run = dags[dag_id].test()
    assert dag_run.state == "failed"
    assert submit_ti(dag_run).try_number == tries
    assert len(emulator.state.requests) == tries  # one refused submit per try


def test_a_transient_failure_is_retried(dags, emulator):
    # Three 503s spend the hook's three attempts of the first try; the task's retry then succeeds.
    emulator.state.faults.append(Fault(vendor="docimprint", path="/v1/extract", status=503, times=3))
    dag_run = dags["docjobs_retry_policy"].test()
    assert dag_run.state == "success"
    assert submit_ti(dag_run).try_number == 2


def test_soft_fail_holds_on_the_first_poll_of_a_deferrable_sensor(dags, emulator):
    emulator.state.settings.update({"processing_seconds": 0})  # the job has failed before the first poll
    dag_run = dags["docjobs_soft_fail_first_poll"].test(run_conf={"name": "fail.pdf"})
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states == {"submit": "success", "wait": "skipped"}


def test_a_retry_submits_again_when_the_stored_job_failed(dags, emulator):
    """A cleared or retried submit polls its stored job first: a failed job is not handed on again."""
    emulator.state.settings.update({"processing_seconds": 0})  # the job has failed by the time of the retry
    dag_run = dags["docjobs_durable_failed_job"].test(run_conf={"name": "fail.pdf"})
    assert submit_ti(dag_run).try_number == 2
    submits = [r for r in emulator.state.requests if r["path"].endswith("/v1/extract")]
    polls = [r for r in emulator.state.requests if "/v1/jobs/" in r["path"]]
    assert len(submits) == 2
    assert len(polls) == 1
