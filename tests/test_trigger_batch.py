"""
One trigger for a whole batch, run for real against the emulator: results land the moment they are
fetched, a re-created trigger fetches nothing twice, and every trigger of a connection shares one pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl

import httpx
import pendulum
import pytest
from conftest import copy_sample

from airflow_docjobs.emulator import EmulatorSettings, Fault
from airflow_docjobs.emulator.testing import EmulatorServer
from airflow_docjobs.hooks.docimprint import DocimprintHook
from airflow_docjobs.hooks.finovox import FinovoxHook
from airflow_docjobs.results import ResultsStore, job_key
from airflow_docjobs.triggers import job as job_module
from airflow_docjobs.triggers.job import INLINE_LIMIT, DocJobTrigger

DOCIMPRINT = "airflow_docjobs.hooks.docimprint.DocimprintHook"
FINOVOX = "airflow_docjobs.hooks.finovox.FinovoxHook"


def store_in(tmp_path) -> ResultsStore:
    return ResultsStore(f"file://{tmp_path / 'results'}", "docimprint", "dag", "run")


def batch_trigger(jobs, store, *, hook=DOCIMPRINT, conn_id="docimprint_default", interval=0.05, seconds=30):
    return DocJobTrigger(
        hook_class=hook,
        conn_id=conn_id,
        deadline=pendulum.now("UTC").add(seconds=seconds).isoformat(),
        poll_interval=interval,
        jobs=DocJobTrigger.pack(jobs, store),
        results=store.spec(),
    )


def submit_docimprint(*names: str) -> list[dict]:
    with DocimprintHook() as hook:
        return [hook.job_reference(hook.submit(f"https://example.com/{name}")) for name in names]


async def first_event(trigger: DocJobTrigger):
    return (await asyncio.wait_for(anext(trigger.run()), timeout=30)).payload


async def test_a_batch_lands_every_result_and_ends_with_counts(emulator, tmp_path):
    jobs = submit_docimprint("a.pdf", "fail_b.pdf", "c.pdf")
    store = store_in(tmp_path)
    event = await first_event(batch_trigger(jobs, store))
    assert event == {"status": "success", "succeeded": 2, "failed": 1, "already_landed": 0}
    records = [store.landed(job) for job in jobs]
    assert [r["state"] for r in records] == ["succeeded", "failed", "succeeded"]
    assert records[0]["result"]["status"] == "complete"
    assert records[1]["error"]["code"] == "extract_failed"
    assert (
        oct(
            (tmp_path / "results")
            .joinpath(store.uri(job_key(jobs[0])).split("results/", 1)[1])
            .stat()
            .st_mode
        )[-3:]
        == "600"
    )


async def test_a_recreated_trigger_fetches_nothing_twice(emulator, tmp_path):
    emulator.state.settings.update({"processing_seconds": 0.2})
    early = submit_docimprint("a.pdf", "b.pdf")
    emulator.state.settings.update({"processing_seconds": 3})
    late = submit_docimprint("c.pdf", "d.pdf")
    store = store_in(tmp_path)
    trigger = batch_trigger(early + late, store)
    run = trigger.run()
    waiting = asyncio.ensure_future(anext(run))
    while len(store.landed_keys()) < 2:  # noqa: ASYNC110 - the early jobs land; then the triggerer "dies"
        await asyncio.sleep(0.05)
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    await run.aclose()
    restart = len(emulator.state.requests)
    _, kwargs = trigger.serialize()
    emulator.state.advance(3)
    event = await first_event(DocJobTrigger(**json.loads(json.dumps(kwargs))))
    assert event == {"status": "success", "succeeded": 2, "failed": 0, "already_landed": 2}
    polled_again = {r["path"].rsplit("/", 1)[1] for r in emulator.state.requests[restart:]}
    assert polled_again == {job["job_id"] for job in late}  # the landed jobs were never asked for again


async def test_results_land_before_a_finovox_result_expires(emulator, tmp_path):
    emulator.state.settings.update({"processing_seconds": 0.2, "result_ttl_seconds": 0.5})
    with FinovoxHook() as hook:
        quick = hook.job_reference(hook.submit(str(copy_sample(tmp_path, "quick.pdf"))))
        emulator.state.settings.update({"processing_seconds": 2})
        slow = hook.job_reference(hook.submit(str(copy_sample(tmp_path, "slow.pdf"))))
    store = ResultsStore(f"file://{tmp_path / 'results'}", "finovox", "dag", "run")
    event = await first_event(batch_trigger([quick, slow], store, hook=FINOVOX, conn_id="finovox_default"))
    assert event == {"status": "success", "succeeded": 2, "failed": 0, "already_landed": 0}
    with FinovoxHook() as hook:
        assert hook.get_job_status(quick).state == "pending"  # gone at the vendor by the end of the batch
    assert store.landed(quick)["result"]["name"] == "quick.pdf"  # but landed when it was fetched
    assert quick["retrieve_token"] not in json.dumps(store.landed(quick))  # only its hash is kept


async def test_the_first_window_is_polled_at_once_one_interval_after_the_trigger_starts(emulator, tmp_path):
    emulator.state.settings.update({"processing_seconds": 60})
    jobs = submit_docimprint(*(f"{i}.pdf" for i in range(10)))
    emulator.state.requests.clear()
    trigger = batch_trigger(jobs, store_in(tmp_path), interval=1.0, seconds=1.45)
    waiting = asyncio.ensure_future(first_event(trigger))
    await asyncio.sleep(0.85)
    assert not emulator.state.requests  # the sensor has just polled
    await asyncio.sleep(0.4)
    assert len(emulator.state.requests) >= 10  # the first window at once, not spread over an interval
    event = await waiting
    assert (event["status"], event["pending"]) == ("timeout", 10)


async def test_a_batch_counts_its_first_polls_from_the_sensors_round(emulator, tmp_path):
    """Deferred 0.6 s after its sensor's round began, a batch first polls 0.4 s later, not 1 s."""
    emulator.state.settings.update({"processing_seconds": 60})
    jobs = submit_docimprint(*(f"{i}.pdf" for i in range(10)))
    emulator.state.requests.clear()
    trigger = batch_trigger(jobs, store_in(tmp_path), interval=1.0, seconds=1.0)
    trigger.polled_at = pendulum.now("UTC").subtract(seconds=0.6).isoformat()
    assert trigger.serialize()[1]["polled_at"] == trigger.polled_at
    waiting = asyncio.ensure_future(first_event(trigger))
    await asyncio.sleep(0.2)
    assert not emulator.state.requests
    await asyncio.sleep(0.4)
    assert len(emulator.state.requests) >= 10
    assert (await waiting)["status"] == "timeout"


async def test_a_batch_found_ended_at_once_lands_at_once_and_ends_an_interval_after_it_started(
    emulator, tmp_path
):
    """
    Its sensor's round long past, a batch polls as it starts and lands what ended; its event still waits
    an interval from the start: a resume that soon meets Airflow's stale-executor-event race (design.md).
    """
    emulator.state.settings.update({"processing_seconds": 0})
    jobs = submit_docimprint("a.pdf", "b.pdf")
    store = store_in(tmp_path)
    trigger = batch_trigger(jobs, store, interval=1.0)
    trigger.polled_at = pendulum.now("UTC").subtract(seconds=5).isoformat()
    started = asyncio.get_running_loop().time()
    waiting = asyncio.ensure_future(first_event(trigger))
    await asyncio.sleep(0.5)
    assert all(store.has_landed(job) for job in jobs)
    assert not waiting.done()
    assert (await waiting)["status"] == "success"
    assert asyncio.get_running_loop().time() - started >= 1.0


async def test_a_429_slows_the_whole_batch(emulator, tmp_path):
    jobs = submit_docimprint(*(f"{i}.pdf" for i in range(6)))
    emulator.state.requests.clear()
    emulator.state.faults.append(
        Fault(vendor="docimprint", path="/v1/jobs/", status=429, retry_after="1", times=1)
    )
    started = asyncio.get_running_loop().time()
    event = await first_event(batch_trigger(jobs, store_in(tmp_path), interval=0.05))
    assert event["status"] == "success"
    # The 429 paused every poll of the pool: each job was asked once after the pause, not every 50 ms
    # for the 0.5 s its processing took (about 50 requests).
    assert 7 <= len(emulator.state.requests) <= 12, len(emulator.state.requests)
    assert asyncio.get_running_loop().time() - started >= 1.0


async def test_a_poll_backing_off_lends_its_slot(emulator, vendor_conn, tmp_path, monkeypatch):
    """A 503 sends one poll into the hook's backoff; the batch's other polls go on in its slot meanwhile."""
    monkeypatch.setattr(job_module, "MAX_IN_FLIGHT", 4)
    vendor_conn("docimprint", retry_base_delay=1.0, retry_max_delay=2.0, max_attempts=5)
    jobs = submit_docimprint(*(f"{i}.pdf" for i in range(16)))
    await asyncio.sleep(0.6)  # every job ended
    faulted = jobs[:4]  # the first four polls, which take all four slots: each answers 503 twice
    for job in faulted:
        emulator.state.faults.append(
            Fault(vendor="docimprint", path=f"/v1/jobs/{job['job_id']}", status=503, times=2)
        )
    store = store_in(tmp_path)
    started = asyncio.get_running_loop().time()
    event = await first_event(batch_trigger(jobs, store, interval=0.05))
    assert event["succeeded"] == 16
    landed = {
        job["job_id"]: os.stat(store.uri(job_key(job)).removeprefix("file://")).st_mtime for job in jobs
    }
    late = min(landed[job["job_id"]] for job in faulted)  # two backoffs: at least 0.5 + 1 s after the poll
    others = [landed[job["job_id"]] for job in jobs[4:]]
    # Before, the four sleeping polls held every slot: the other twelve waited the 1.5 s or more with them.
    assert max(others) < late, (max(others), late)
    assert asyncio.get_running_loop().time() - started >= 1.5


async def test_a_poll_whose_retries_outlasted_half_an_interval_is_asked_again_at_once(
    emulator, vendor_conn, tmp_path
):
    """
    The back-off after a failed poll counts from when it was sent: the hook's own retry waited 0.8 to
    1.6 s (jittered), at least half the interval, so the poll is asked again at once, not half an interval
    (0.8 s) after the retries gave up.
    """
    vendor_conn("docimprint", retry_base_delay=1.6, retry_max_delay=1.6, max_attempts=2)
    (job,) = submit_docimprint("a.pdf")
    await asyncio.sleep(0.6)  # ended
    path = f"/v1/jobs/{job['job_id']}"
    emulator.state.faults.append(Fault(vendor="docimprint", path=path, status=503, times=2))
    emulator.state.requests.clear()
    event = await first_event(batch_trigger([job], store_in(tmp_path), interval=1.6))
    assert event["succeeded"] == 1
    first, retried, again = (r["at"] for r in emulator.state.requests if r["path"].endswith(path))
    assert retried - first >= 0.75  # the hook's own retry, after its back-off
    assert again - retried < 0.3, again - retried  # then at once: 0.8 s after the poll was sent has passed


async def test_a_job_backs_off_from_its_own_failures_and_the_watched_job_within_a_watch(
    emulator, vendor_conn, tmp_path
):
    """
    Job 0 fails every poll, job 1 its first, answered once job 0 has failed twice. Job 1 is asked again
    half an interval after its poll was sent, as after a first failure: not after the batch's third failure
    in a row (two intervals; one before the watched job's retry was brought forward). Job 0, the oldest,
    watched, is asked a quarter interval after each failure, not backed off: it alone would find the next
    ends of a vendor that runs its oldest first.
    """
    vendor_conn("docimprint", max_attempts=1)
    jobs = submit_docimprint("0.pdf", "1.pdf")
    await asyncio.sleep(0.6)  # ended
    paths = [f"/v1/jobs/{job['job_id']}" for job in jobs]
    emulator.state.faults += [
        Fault(vendor="docimprint", path=paths[0], status=503),
        Fault(vendor="docimprint", path=paths[1], status=503, delay=0.4, times=1),
    ]
    emulator.state.requests.clear()
    store = store_in(tmp_path)
    event = await first_event(batch_trigger(jobs, store, interval=1.0))
    assert event["status"] == "error"  # job 0's ten failures in a row, once job 1 had landed
    assert store.landed(jobs[1])["state"] == "succeeded"
    asked = [[r["at"] for r in emulator.state.requests if r["path"].endswith(path)] for path in paths]
    assert len(asked[1]) == 2
    assert 0.45 <= asked[1][1] - asked[1][0] < 0.8, asked[1]
    gaps = [b - a for a, b in zip(asked[0], asked[0][1:], strict=False)]
    assert len(gaps) >= 10
    assert max(gaps) < 0.4, gaps


async def test_every_trigger_of_a_connection_shares_one_pool(emulator, tmp_path):
    jobs = submit_docimprint(*(f"{i}.pdf" for i in range(20)))
    hooks = [DocimprintHook() for _ in jobs]
    pools = {id(await hook.apool()) for hook in hooks}
    assert len(pools) == 1
    statuses = await asyncio.gather(
        *(hook.aget_job_status(job) for hook, job in zip(hooks, jobs, strict=True))
    )
    assert len(statuses) == 20
    for hook in hooks:
        await hook.aclose()
    async with DocimprintHook() as again:  # the last user left within the linger: the same pool again
        assert id(await again.apool()) in pools
        assert again._pool is not None
        assert again._pool.users == 1


def test_a_large_batch_keeps_its_trigger_row_small(emulator, tmp_path):
    store = store_in(tmp_path)
    token = "gAAAAAB" + "x" * 150
    jobs = [FinovoxHook.job_reference(f"{token}{i}") for i in range(1000)]
    trigger = batch_trigger(jobs, store, hook=FINOVOX, conn_id="finovox_default")
    _, kwargs = trigger.serialize()
    row = json.dumps(kwargs)
    assert len(row) < INLINE_LIMIT
    assert token not in row
    spilled = (tmp_path / "results").rglob("_jobs/*.json")
    assert token not in next(spilled).read_text()  # encrypted with Airflow's Fernet key
    assert DocJobTrigger.unpack(kwargs["jobs"]) == jobs


async def test_many_single_triggers_share_one_pool_over_tls(tmp_path, monkeypatch):
    """A hundred deferred sensors of one connection: a hundred polls per round over a few kept-alive sockets."""
    with EmulatorServer(EmulatorSettings(processing_seconds=30, frozen_clock=True), tls=True) as server:
        monkeypatch.setenv("AIRFLOW_CONN_DOCIMPRINT_DEFAULT", server.connection_json("docimprint"))
        response = await asyncio.to_thread(
            httpx.post,
            f"{server.url}/_emulator/bulk",
            json={"vendor": "docimprint", "count": 100},
            verify=ssl.create_default_context(cafile=server.ca_file),
        )
        jobs = [DocimprintHook.job_reference(ref) for ref in response.json()["references"]]
        server.reset_counters()
        store = store_in(tmp_path)
        triggers = [
            DocJobTrigger(
                hook_class=DOCIMPRINT,
                conn_id="docimprint_default",
                deadline=pendulum.now("UTC").add(seconds=30).isoformat(),
                poll_interval=0.2,
                job=job,
                results=store.spec(),
            )
            for job in jobs
        ]
        waits = [asyncio.ensure_future(first_event(trigger)) for trigger in triggers]
        while server.state.stats()["requests"] < 200:  # noqa: ASYNC110 - two rounds of polls while pending
            await asyncio.sleep(0.05)
        server.state.advance(60)
        events = await asyncio.gather(*waits)
        assert all(event == {"status": "success"} for event in events)
        # One pool for all of them: a handful of TLS connections (bounded by concurrency), not one per trigger.
        assert server.connections <= 32, server.connections
        assert len(store.landed_keys()) == 100


async def test_a_hook_polled_concurrently_takes_the_pool_once_and_gives_it_back(emulator):
    """The first polls of a batch start together; the pool must still be released, then closed."""
    jobs = submit_docimprint(*(f"{i}.pdf" for i in range(8)))
    async with DocimprintHook() as hook:
        await asyncio.gather(*(hook.aget_job_status(job) for job in jobs))
        pool = hook._pool
        assert pool is not None
        assert pool.users == 1
    assert pool.users == 0
    assert pool.session is not None  # lingering for the next user (test_a_pool_outlives_its_last_user)


async def test_a_pool_outlives_its_last_user_by_the_linger(emulator, monkeypatch):
    """
    Single-document triggers that end and start in turn share one pool: one connection lookup, its sockets
    kept. Before, each trigger that found the pool without users opened its own: 1,000 single triggers
    ending on their first poll over TLS made 901 handshakes and 32 lookups (benchmarks/pool_churn.py).
    """
    from airflow_docjobs.hooks import transport

    monkeypatch.setattr(transport, "LINGER", 0.3)
    lookups = []
    load = DocimprintHook._aload

    async def counted(self):
        lookups.append(self.conn_id)
        return await load(self)

    monkeypatch.setattr(DocimprintHook, "_aload", counted)
    jobs = submit_docimprint("a.pdf", "b.pdf")
    emulator.reset_counters()
    pools = []
    for job in jobs:  # one after the other, as two sensors deferred a moment apart
        async with DocimprintHook() as hook:
            await hook.aget_job_status(job)
            pools.append(hook._pool)
    assert pools[0] is pools[1]
    assert pools[0] is not None
    assert lookups == ["docimprint_default"]
    assert emulator.connections == 1
    await asyncio.sleep(0.5)  # idle past the linger: closed, and a new user opens a new one
    assert pools[0].session is None
    async with DocimprintHook() as hook:
        await hook.aget_job_status(jobs[0])
        assert hook._pool is not pools[0]
    assert lookups == ["docimprint_default"] * 2


def test_a_lingering_pool_closes_when_its_loop_ends(emulator):
    """asyncio.run (dag.test runs each trigger so) cancels the linger, which closes the session first."""
    jobs = submit_docimprint("a.pdf")

    async def poll():
        async with DocimprintHook() as hook:
            await hook.aget_job_status(jobs[0])
            return hook._pool

    pool = asyncio.run(poll())
    assert pool is not None
    assert pool.session is None


async def test_a_refused_key_retires_the_pool(emulator):
    """A rotated key: the trigger that met the refusal ends, and the next one reads the connection again."""
    from airflow_docjobs.exceptions import VendorAuthError

    jobs = submit_docimprint("a.pdf")
    async with DocimprintHook() as first:
        await first.aget_job_status(jobs[0])
        emulator.state.faults.append(Fault(vendor="docimprint", path="/v1/jobs/", status=402, times=1))
        with pytest.raises(VendorAuthError):
            await first.aget_job_status(jobs[0])
        retired = first._pool
        async with DocimprintHook() as second:
            assert (await second.apool()) is not retired
            assert (await second.aget_job_status(jobs[0])).state in ("pending", "succeeded")
    assert retired is not None
    assert retired.session is None
