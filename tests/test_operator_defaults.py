"""
The settings the user gave are the settings the tasks use: the DAG's or a task group's ``default_args``
win over the provider's defaults (the sensors' two retries, every task's retry policy), which apply only
where the user said nothing.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
import pytest
from airflow.providers.common.compat.sdk import DAG, TaskGroup

from airflow_docjobs.operators.docimprint import DocimprintSubmitOperator
from airflow_docjobs.retry import docjobs_retry_policy
from airflow_docjobs.sensors.docimprint import DocimprintJobSensor

needs_policies = pytest.mark.skipif(
    docjobs_retry_policy() is None, reason="retry policies need Airflow >= 3.3"
)


def sensor(default_args: dict[str, object] | None = None, **kwargs: object) -> DocimprintJobSensor:
    with DAG(
        "defaults", schedule=None, start_date=pendulum.datetime(2026, 1, 1), default_args=default_args or {}
    ):
        return DocimprintJobSensor(task_id="wait", job_id="job-1", **kwargs)


def test_the_sensor_takes_retries_and_retry_delay_from_default_args():
    wait = sensor({"retries": 5, "retry_delay": timedelta(minutes=3)})
    assert (wait.retries, wait.retry_delay) == (5, timedelta(minutes=3))


def test_retries_zero_in_default_args_means_one_try():
    assert sensor({"retries": 0}).retries == 0


def test_a_task_group_default_args_win_too():
    with DAG("group", schedule=None, start_date=pendulum.datetime(2026, 1, 1), default_args={"retries": 4}):
        with TaskGroup("g", default_args={"retry_delay": timedelta(seconds=42)}):
            wait = DocimprintJobSensor(task_id="wait", job_id="job-1")
    assert (wait.retries, wait.retry_delay) == (4, timedelta(seconds=42))


def test_an_argument_beats_default_args_and_our_defaults_fill_the_rest():
    wait = sensor({"retries": 5}, retries=1)
    assert (wait.retries, wait.retry_delay) == (1, timedelta(seconds=10))
    bare = sensor()
    assert (bare.retries, bare.retry_delay) == (2, timedelta(seconds=10))


@needs_policies
@pytest.mark.parametrize("kind", ["sensor", "submit"])
def test_the_retry_policy_of_default_args_wins(kind):
    args = {"retry_policy": None}
    with DAG("policy", schedule=None, start_date=pendulum.datetime(2026, 1, 1), default_args=args):
        task = (
            DocimprintJobSensor(task_id="wait", job_id="job-1")
            if kind == "sensor"
            else DocimprintSubmitOperator(task_id="submit", source="https://example.com/a.pdf")
        )
    assert task.retry_policy is None
    assert sensor().retry_policy is not None  # ours where nothing was said


@needs_policies
def test_the_policy_says_no_vendor_was_contacted_for_bad_input():
    from airflow_docjobs.exceptions import DocJobsInputError, VendorAuthError

    policy = docjobs_retry_policy()
    missing = DocJobsInputError("parameter 'file': '/x/a.pdf' does not exist", vendor="Mindee", conn_id="m")
    decision = policy.evaluate(missing, try_number=1, max_tries=3)
    assert decision.action.value == "fail"
    assert "no vendor was contacted" in decision.reason
    refused = policy.evaluate(
        VendorAuthError("refused", vendor="Mindee", conn_id="m"), try_number=1, max_tries=3
    )
    assert refused.action.value == "fail"
    assert "the vendor refused" in refused.reason
