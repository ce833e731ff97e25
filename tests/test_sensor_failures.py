"""
The sensors in real ``dag.test()`` runs when the vendor stays down, in every mode, and how they log a
job's progress: once per change, not once per poll.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import POLL_PATHS, advancing, copy_sample, journal, load_dags

from airflow_docjobs.emulator import Fault

pytestmark = pytest.mark.dagtest
DAG_FILE = Path(__file__).parent / "dags" / "docjobs_test_dags.py"
POLL = POLL_PATHS["docimprint"]
ATTEMPTS = 3  # the hook's attempts per poll (conftest.FAST_RETRIES)


@pytest.fixture(scope="module")
def dags(airflow_db):
    return load_dags(DAG_FILE)


def run(dags, dag_id, tmp_path, name="doc.pdf"):
    dag_run = dags[dag_id].test(run_conf={"file": str(copy_sample(tmp_path, name)), "name": name})
    return dag_run, {ti.task_id: ti for ti in dag_run.get_task_instances()}


# Failed polls per try that end the wait (max_consecutive_failures=2). Every poke of a rescheduling sensor
# is a new instance: its count must outlive the instance. A deferrable sensor's own first poll, on the
# worker, is not handed to its trigger, which counts two of its own: three in a row in all.
POLLS_PER_TRY = {"poke": 2, "reschedule": 2, "deferrable": 1 + 2}


@pytest.mark.parametrize("mode", list(POLLS_PER_TRY))
def test_a_vendor_that_stays_down_ends_the_wait(dags, emulator, tmp_path, capfd, mode):
    emulator.state.faults.append(Fault(vendor="docimprint", path=POLL, status=503))
    _, tis = run(dags, f"docjobs_vendor_down_{mode}", tmp_path)
    assert tis["wait"].state == "failed"
    captured = capfd.readouterr()
    logs = captured.out + captured.err
    assert "VendorTransientError" in logs
    assert "AirflowSensorTimeout" not in logs
    # Ended by the count of failed polls in a row, not by the sensor's 60 s timeout; once per try.
    assert len(journal(emulator, POLL, "GET")) == POLLS_PER_TRY[mode] * ATTEMPTS * tis["wait"].try_number
    assert tis["wait"].try_number == 3  # the provider's retry policy retried the transient failure


@pytest.mark.parametrize("mode", ["poke", "deferrable", "reschedule"])
def test_progress_is_logged_once_per_change(dags, frozen, tmp_path, capfd, mode):
    # Three polls at 0%, three at 50%, then the job ends: two lines, not one per poll.
    with advancing(frozen, POLL, [(3, 0.25), (6, 5)]):
        dag_run, _ = run(dags, f"docjobs_docimprint_{mode}", tmp_path)
    assert dag_run.state == "success"
    (job_id,) = [key for vendor, key in frozen.state.jobs if vendor == "docimprint"]
    lines = capfd.readouterr().out.splitlines()
    sensor = [line for line in lines if f"docimprint job job_id={job_id}: " in line]
    trigger = [line for line in lines if f"docimprint job_id={job_id}: " in line]
    if mode != "deferrable":
        assert [line.split(": ", 1)[1].split("%")[0] for line in sensor] == ["0", "50"], sensor
        assert trigger == []
    else:
        # The sensor's one poll on the worker, then the trigger's own lines.
        assert [line.split(": ", 1)[1].split("%")[0] for line in sensor] == ["0"], sensor
        assert [line.split(": ", 1)[1].split("%")[0] for line in trigger] == ["0", "50"], trigger
    assert len(journal(frozen, POLL)) >= 7
