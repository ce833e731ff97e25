"""
``trigger_queue``: a sensor's wait goes to the triggerers of one queue (Airflow >= 3.2, ``[triggerer]
queues_enabled``, ``airflow triggerer --queues``); without the setting, a clear error before any request.
The deployment test (``test_deployment_cluster.py``) runs such waits on a triggerer of their own.
"""

from __future__ import annotations

import pytest
import structlog
from test_sensor_resume import context_for

from airflow_docjobs.exceptions import DocJobsInputError
from airflow_docjobs.hooks.docimprint import DocimprintHook
from airflow_docjobs.sensors.docimprint import DocimprintJobSensor
from airflow_docjobs.version_compat import HAS_TRIGGER_QUEUES

pytestmark = pytest.mark.skipif(not HAS_TRIGGER_QUEUES, reason="trigger queues need Airflow >= 3.2")


def test_a_trigger_queue_without_queues_enabled_fails_before_any_request(emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW__TRIGGERER__QUEUES_ENABLED", "False")
    sensor = DocimprintJobSensor(task_id="wait", job_id="j-1", deferrable=True, trigger_queue="docwaits")
    with pytest.raises(DocJobsInputError, match=r"trigger_queue.*queues_enabled.*docimprint_default"):
        sensor.execute(context_for("wait"))
    assert not emulator.state.requests


def test_the_wait_defers_to_its_trigger_queue(frozen, monkeypatch, tmp_path):
    """Airflow's own defer step (the task runner's) gives the trigger row the sensor's trigger queue."""
    from airflow.sdk.exceptions import TaskDeferred
    from airflow.sdk.execution_time.task_runner import _defer_task

    monkeypatch.setenv("AIRFLOW__TRIGGERER__QUEUES_ENABLED", "True")
    with DocimprintHook() as hook:
        job_id = hook.submit("https://example.com/a.pdf")
    sensor = DocimprintJobSensor(
        task_id="wait",
        job_id=job_id,
        deferrable=True,
        trigger_queue="docwaits",
        queue="workers",
        results_uri=f"file://{tmp_path}",
    )
    context = context_for("wait")
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)
    # The runtime task instance's task is the very object that ran.
    context["ti"].task, context["ti"].run_id = sensor, "run"
    message, _ = _defer_task(deferred.value, context["ti"], structlog.get_logger())
    assert message.queue == "docwaits"
