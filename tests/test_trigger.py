"""
The generic trigger, run for real against the emulator with its clock frozen, so a job ends only when the
test says so: it polls through one pooled connection, logs progress once per change, and ends.
Failures and back-off are in ``test_trigger_failures.py``, batches in ``test_trigger_batch.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import pendulum
import pytest
from conftest import PATIENCE, POLL_PATHS, answered, copy_sample, journal, until

from airflow_docjobs.hooks.docimprint import DocimprintHook
from airflow_docjobs.hooks.finovox import FinovoxHook
from airflow_docjobs.triggers.job import DocJobTrigger

DOCIMPRINT = "airflow_docjobs.hooks.docimprint.DocimprintHook"
FINOVOX = "airflow_docjobs.hooks.finovox.FinovoxHook"
POLL = POLL_PATHS["docimprint"]


def trigger_for(
    job: dict, *, hook: str = DOCIMPRINT, conn_id: str = "docimprint_default", seconds: float = PATIENCE, **kw
) -> DocJobTrigger:
    deadline = pendulum.now("UTC").add(seconds=seconds).isoformat()
    kw.setdefault("poll_interval", 0.05)
    return DocJobTrigger(hook_class=hook, conn_id=conn_id, job=job, deadline=deadline, **kw)


async def first_event(trigger: DocJobTrigger) -> dict:
    return (await asyncio.wait_for(anext(trigger.run()), timeout=PATIENCE)).payload


def submit_docimprint(source: str = "https://example.com/a.pdf") -> dict:
    with DocimprintHook() as hook:
        return hook.job_reference(hook.submit(source))


def polls(emulator) -> int:
    return len(answered(emulator, POLL))  # answered: an advance after it cannot change what it said


async def test_a_wait_polls_until_the_job_ends_and_resumes_without_the_result(frozen):
    job = submit_docimprint()
    frozen.state.requests.clear()
    frozen.reset_counters()
    waiting = asyncio.create_task(first_event(trigger_for(job)))
    await until(lambda: polls(frozen) >= 3)  # pending for as long as the clock stands still
    frozen.state.advance(5)
    event = await waiting
    # The triggerer logs event payloads: the result (personal data) is fetched by the sensor instead.
    assert event == {"status": "success"}
    requests = journal(frozen)
    assert all(r["method"] == "GET" and r["path"].endswith(job["job_id"]) for r in requests)
    # One request per poll, all through one kept-alive connection: no client or handshake per poll.
    assert frozen.connections == 1
    assert frozen.state.stats()["requests"] == len(requests)


async def test_the_first_poll_waits_one_interval(frozen):
    job = submit_docimprint()
    started = asyncio.get_running_loop().time()
    waiting = asyncio.create_task(first_event(trigger_for(job, poll_interval=0.5)))
    await until(lambda: polls(frozen) >= 1)
    assert asyncio.get_running_loop().time() - started >= 0.45  # the sensor has just polled itself
    frozen.state.advance(5)
    assert (await waiting)["status"] == "success"


async def test_vendor_failure_resumes_with_the_message_and_code(frozen):
    job = submit_docimprint("https://example.com/fail.pdf")
    frozen.state.advance(5)
    event = await first_event(trigger_for(job))
    assert event["status"] == "failed"
    assert event["message"]
    assert event["code"] == "extract_failed"


async def test_the_deadline_ends_the_wait(frozen):
    event = await first_event(trigger_for(submit_docimprint(), seconds=0.5))
    assert event["status"] == "timeout"
    assert event["pending"] == 1
    assert "docimprint_default" in event["message"]


async def test_an_expired_finovox_token_waits_until_the_deadline(frozen, tmp_path):
    """Finovox forgets a result after its TTL and then answers "not ready": a timeout, never an error."""
    with FinovoxHook() as hook:
        job = hook.job_reference(hook.submit(str(copy_sample(tmp_path, "a.pdf"))))
    frozen.state.advance(5 + frozen.state.settings.result_ttl_seconds)
    event = await first_event(trigger_for(job, hook=FINOVOX, conn_id="finovox_default", seconds=1))
    assert event["status"] == "timeout"
    assert len(journal(frozen, "/retrieve")) >= 1


async def test_progress_is_logged_once_per_change(frozen, capfd):
    job = submit_docimprint()
    waiting = asyncio.create_task(first_event(trigger_for(job)))
    await until(lambda: polls(frozen) >= 3)
    frozen.state.advance(0.25)  # half way through the 0.5 s the job takes
    seen = polls(frozen)
    await until(lambda: polls(frozen) >= seen + 3)
    frozen.state.advance(5)
    assert (await waiting)["status"] == "success"
    lines = [
        line for line in capfd.readouterr().out.splitlines() if f"docimprint job_id={job['job_id']}: " in line
    ]
    assert [line.split(": ", 1)[1].split("%")[0] for line in lines] == ["0", "50"], lines
    assert polls(frozen) >= 7  # the lines are not one per poll


async def test_permanent_error_ends_the_wait_at_once(emulator):
    event = await first_event(trigger_for({"job_id": "job_unknown"}))
    assert event["status"] == "error"
    assert event["error_type"] == "VendorNotFoundError"
    assert polls(emulator) == 1


def test_serialize_round_trip_is_json_without_secrets(emulator, tmp_path):
    with FinovoxHook() as hook:
        token = hook.submit(str(copy_sample(tmp_path, "a.pdf")))
    trigger = trigger_for(FinovoxHook.job_reference(token), hook=FINOVOX, conn_id="finovox_default")
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_docjobs.triggers.job.DocJobTrigger"
    text = json.dumps(kwargs)  # JSON only
    assert "emulator" not in text.replace(emulator.url, "")  # the API key is not in the trigger row
    again = DocJobTrigger(**json.loads(text))
    assert again.serialize() == (classpath, kwargs)


async def test_recreated_trigger_resumes_mid_wait_with_the_same_deadline(frozen):
    job = submit_docimprint()
    trigger = trigger_for(job, seconds=PATIENCE)
    run = trigger.run()
    waiting = asyncio.ensure_future(anext(run))
    await until(lambda: polls(frozen) >= 2)  # mid-wait: the triggerer "dies"
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    await run.aclose()  # runs the trigger's cleanup: its client is closed
    _, kwargs = trigger.serialize()
    restarted = DocJobTrigger(**json.loads(json.dumps(kwargs)))
    assert restarted.deadline == trigger.deadline
    resumed = asyncio.create_task(first_event(restarted))
    seen = polls(frozen)
    await until(lambda: polls(frozen) > seen)  # the restarted trigger polls the same job
    frozen.state.advance(5)
    assert (await resumed) == {"status": "success"}


def test_trigger_refuses_a_non_hook_class():
    with pytest.raises(TypeError, match="DocJobsHook"):
        trigger_for({"job_id": "x"}, hook="json.JSONDecoder")


async def test_a_waiting_single_job_costs_the_collector_few_objects(frozen, caplog):
    """
    What a waiting single-document trigger leaves for the garbage collector to walk, per trigger.

    A triggerer's full collection walks every tracked object: at 1,000 waits, each object a trigger keeps
    is a thousand more. Measured as the slope between 100 and 300 waiting triggers (the process's own
    objects, the emulator's included, cancel out): 49 per trigger here before the shared logger, the lazy
    per-thread record and pool lock, and a driver without closures; 36 after.
    """
    import gc

    import httpx

    async with httpx.AsyncClient(base_url=frozen.url) as client:
        answer = await client.post("/_emulator/bulk", json={"vendor": "docimprint", "count": 300})
    jobs = [DocimprintHook.job_reference(ref) for ref in answer.json()["references"]]

    async def waiting(count: int) -> int:
        """Start ``count`` more waits; once each has polled once and sleeps, the objects tracked."""
        seen = polls(frozen)
        for job in jobs[:count]:
            tasks.append(asyncio.create_task(first_event(trigger_for(job, poll_interval=2))))
        del jobs[:count]
        await until(lambda: polls(frozen) >= seen + count)
        await asyncio.sleep(0.3)  # the last answers reach their triggers, which go back to sleep
        frozen.state.requests.clear()
        caplog.clear()  # the log records pytest keeps (a triggerer writes its lines and drops them)
        gc.collect()
        return len(gc.get_objects())

    tasks: list[asyncio.Task] = []
    try:
        few = await waiting(100)
        many = await waiting(200)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert (many - few) / 200 <= 42
