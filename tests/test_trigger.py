"""The generic trigger, run for real against the emulator: it polls, survives trouble, and ends."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pendulum
import pytest
from airflow.triggers.base import TriggerEvent
from conftest import copy_sample

from airflow_docjobs.emulator import Fault
from airflow_docjobs.hooks.docimprint import DocimprintHook
from airflow_docjobs.hooks.finovox import FinovoxHook
from airflow_docjobs.triggers.job import DocJobTrigger

DOCIMPRINT = "airflow_docjobs.hooks.docimprint.DocimprintHook"


def trigger_for(
    job: dict, *, hook: str = DOCIMPRINT, conn_id: str = "docimprint_default", seconds: float = 30, **kw
):
    deadline = pendulum.now("UTC").add(seconds=seconds).isoformat()
    return DocJobTrigger(
        hook_class=hook, conn_id=conn_id, job=job, deadline=deadline, poll_interval=0.05, **kw
    )


async def first_event(trigger: DocJobTrigger) -> TriggerEvent:
    return await asyncio.wait_for(anext(trigger.run()), timeout=30)


def submit_docimprint(source: str = "https://example.com/a.pdf") -> dict:
    with DocimprintHook() as hook:
        return hook.job(hook.submit_source(source))


async def test_success_resumes_the_sensor_without_the_result_in_the_event(emulator):
    job = submit_docimprint()
    event = await first_event(trigger_for(job))
    # The triggerer logs event payloads: the result (personal data) is fetched by the sensor instead.
    assert event.payload == {"status": "success"}
    polls = [r for r in emulator.state.requests if r["method"] == "GET"]
    # Polled every 50 ms for the 0.5 s the job took: several polls, one request each.
    assert 3 <= len(polls) <= 15


async def test_vendor_failure_resumes_with_the_message(emulator):
    event = await first_event(trigger_for(submit_docimprint("https://example.com/fail.pdf")))
    assert event.payload["status"] == "failed" and event.payload["message"]


async def test_deadline_ends_the_wait(emulator):
    event = await first_event(trigger_for(submit_docimprint("https://example.com/never.pdf"), seconds=0.3))
    assert event.payload["status"] == "timeout"


async def test_transient_trouble_never_ends_the_wait(emulator):
    job = submit_docimprint()
    # Each poll makes 3 attempts (FAST_RETRIES): 7 failed requests span 2 failed polls and one more attempt.
    emulator.state.faults.append(Fault(vendor="docimprint", path="/v1/jobs/", status=503, times=7))
    emulator.state.faults.append(
        Fault(vendor="docimprint", path="/v1/jobs/", status=200, body="<html>", times=1)
    )
    event = await first_event(trigger_for(job))
    assert event.payload == {"status": "success"}


async def test_many_failed_polls_in_a_row_end_the_wait(emulator):
    job = submit_docimprint()
    emulator.state.faults.append(Fault(vendor="docimprint", path="/v1/jobs/", status=502))
    event = await first_event(trigger_for(job, max_consecutive_failures=2))
    assert event.payload["status"] == "error" and event.payload["error_type"] == "VendorTransientError"
    assert "2 polls in a row failed" in event.payload["message"]


async def test_permanent_error_ends_the_wait_at_once(emulator):
    event = await first_event(trigger_for({"job_id": "job_unknown"}))
    assert event.payload["error_type"] == "VendorNotFoundError"


def test_serialize_round_trip_is_json_without_secrets(emulator, tmp_path):
    with FinovoxHook() as hook:
        token = hook.submit_document(str(copy_sample(tmp_path, "a.pdf")))
    trigger = trigger_for(
        FinovoxHook.job(token), hook="airflow_docjobs.hooks.finovox.FinovoxHook", conn_id="finovox_default"
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_docjobs.triggers.job.DocJobTrigger"
    text = json.dumps(kwargs)  # JSON only
    assert "emulator" not in text.replace(emulator.url, "")  # the API key is not in the trigger row
    again = DocJobTrigger(**json.loads(text))
    assert again.serialize() == (classpath, kwargs)


async def test_recreated_trigger_resumes_mid_wait_with_the_same_deadline(emulator):
    job = submit_docimprint()
    trigger = trigger_for(job, seconds=20)
    run = trigger.run()
    waiting = asyncio.ensure_future(anext(run))
    await asyncio.sleep(0.15)  # mid-wait: the triggerer "dies"
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    await run.aclose()  # runs the trigger's cleanup: its client is closed
    _, kwargs = trigger.serialize()
    restarted = DocJobTrigger(**kwargs)
    assert restarted.deadline == trigger.deadline
    assert (await first_event(restarted)).payload == {"status": "success"}


def test_trigger_refuses_a_non_hook_class():
    with pytest.raises(TypeError, match="DocJobsHook"):
        trigger_for({"job_id": "x"}, hook="json.JSONDecoder")
