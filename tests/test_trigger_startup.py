"""
A trigger's start-up over a batch of 100,000 waiting documents gives the event loop back all along: it
reads the spilled job list, lists what already landed, hashes every reference and builds its schedule off
the loop, while the other triggers of the triggerer (here, a ticker) keep running.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pendulum
from test_trigger_batch import DOCIMPRINT, store_in

from airflow_docjobs.hooks.calls import JobStatus
from airflow_docjobs.hooks.docimprint import DocimprintHook
from airflow_docjobs.results import landed_record
from airflow_docjobs.triggers.job import DocJobTrigger

BATCH = 100_000
# What "never holds the loop" means here: Airflow warns at 0.2 s, the target is a few tens of ms.
MOST_CPU_BETWEEN_TICKS = 0.05


async def ticker(stop: asyncio.Event, gaps: list[float]) -> None:
    """Another trigger of the triggerer: wakes every millisecond and notes the CPU spent since its last wake."""
    while not stop.is_set():
        cpu = time.process_time()
        await asyncio.sleep(0.001)
        gaps.append(time.process_time() - cpu)


async def test_a_100000_job_start_up_yields_to_the_loop(frozen, tmp_path):
    # 100,000 jobs pending at the emulator; its clock is stopped, so none ends during the test.
    answer = await asyncio.to_thread(
        httpx.post, f"{frozen.url}/_emulator/bulk", json={"vendor": "docimprint", "count": BATCH}, timeout=60
    )
    jobs = [DocimprintHook.job_reference(ref) for ref in answer.json()["references"]]
    store = store_in(tmp_path)
    for job in jobs[:2]:  # a restarted trigger: two landed before, so every reference is hashed
        store.land(job, landed_record("docimprint", job, JobStatus("succeeded", result={})))
    trigger = DocJobTrigger(
        hook_class=DOCIMPRINT,
        conn_id="docimprint_default",
        # The first poll waits one interval: the wait ends at its deadline, once started, before any poll.
        deadline=pendulum.now("UTC").add(seconds=3).isoformat(),
        poll_interval=60,
        jobs=DocJobTrigger.pack(jobs, store),
        results=store.spec(),
    )
    requests = frozen.state.stats()["requests"]
    stop, gaps = asyncio.Event(), []
    ticking = asyncio.create_task(ticker(stop, gaps))
    event = (await asyncio.wait_for(anext(trigger.run()), timeout=120)).payload
    stop.set()
    await ticking
    assert event["status"] == "timeout"
    assert event["pending"] == BATCH - 2  # the landed two are skipped, the rest all scheduled
    assert frozen.state.stats()["requests"] == requests  # not one poll before one interval
    assert len(gaps) > 100  # the ticker kept running through the start-up and the wait
    assert max(gaps) < MOST_CPU_BETWEEN_TICKS, sorted(gaps)[-5:]
