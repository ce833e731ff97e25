"""
Retries of one request, sync and async, against the emulator: what is retried, how often, how long the
hook waits (``Retry-After``), and what ends the retries (attempts, deadline, client timeout).
"""

from __future__ import annotations

import email.utils
import time

import pytest
from conftest import KIND_IDS, KINDS, POLL_PATHS, journal

from airflow_docjobs.emulator import Fault
from airflow_docjobs.exceptions import VendorTransientError
from airflow_docjobs.hooks.docimprint import DocimprintHook

POLL = POLL_PATHS["docimprint"]
PATHS = ["sync", "async"]


def http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


def docimprint_job(name: str = "a.pdf") -> dict:
    with DocimprintHook() as hook:
        return hook.job_reference(hook.submit(f"https://example.com/{name}"))


async def poll(path: str, job: dict, conn_id: str = "docimprint_default"):
    """One poll of a docimprint job through the sync or the async hook."""
    if path == "sync":
        with DocimprintHook(conn_id) as hook:
            return hook.get_job_status(job)
    async with DocimprintHook(conn_id) as hook:
        return await hook.aget_job_status(job)


@pytest.mark.parametrize("status", [429, 502, 503, 504])
@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_transient_answers_to_a_poll_are_retried(frozen, tmp_path, kind, status):
    with kind.hook() as hook:
        job = kind.submit(hook, tmp_path, "doc.pdf")
        frozen.state.advance(5)
        frozen.state.requests.clear()
        poll_path = POLL_PATHS[kind.vendor]
        frozen.state.faults.append(Fault(vendor=kind.vendor, path=poll_path, status=status, times=2))
        assert hook.get_job_status(job).state == "succeeded"
    assert len(journal(frozen, poll_path)) == 3  # two answers retried, the third taken


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_a_gateway_page_in_place_of_a_poll_is_retried(frozen, tmp_path, kind):
    """A proxy's HTML page answered 200 passes like a 502: the poll is sent again within the call."""
    with kind.hook() as hook:
        job = kind.submit(hook, tmp_path, "doc.pdf")
        frozen.state.requests.clear()
        poll_path = POLL_PATHS[kind.vendor]
        frozen.state.faults.append(
            Fault(vendor=kind.vendor, path=poll_path, status=200, body="<html>proxy", times=2)
        )
        assert hook.get_job_status(job).state == "pending"
    assert len(journal(frozen, poll_path)) == 3


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_a_body_that_is_not_json_is_transient(frozen, tmp_path, kind):
    with kind.hook() as hook:
        job = kind.submit(hook, tmp_path, "doc.pdf")
        poll_path = POLL_PATHS[kind.vendor]
        frozen.state.faults.append(
            Fault(vendor=kind.vendor, path=poll_path, status=200, body='{"status": "pro')
        )
        with pytest.raises(VendorTransientError, match="not JSON"):
            hook.get_job_status(job)
        frozen.state.faults.clear()
        assert hook.get_job_status(job).state == "pending"


def test_a_plain_500_is_not_retried(emulator):
    job = docimprint_job()
    emulator.state.faults.append(Fault(vendor="docimprint", path=POLL, status=500))
    with DocimprintHook() as hook, pytest.raises(VendorTransientError) as err:
        hook.get_job_status(job)
    assert err.value.status_code == 500
    assert len(journal(emulator, POLL)) == 1


@pytest.mark.parametrize("path", PATHS)
async def test_still_failing_after_all_attempts(emulator, vendor_conn, path):
    vendor_conn("docimprint", max_attempts=4)
    job = docimprint_job()
    emulator.state.faults.append(Fault(vendor="docimprint", path=POLL, status=503))
    with pytest.raises(VendorTransientError) as err:
        await poll(path, job)
    assert err.value.status_code == 503
    assert "4 attempts" in str(err.value)
    assert len(journal(emulator, POLL)) == 4


RETRY_AFTER = {"seconds": lambda: "1", "HTTP date": lambda: http_date(2)}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("form", list(RETRY_AFTER))
async def test_retry_after_is_honoured(frozen, path, form):
    """The hook waits what the vendor asks (about a second here), not its own 10 ms backoff."""
    job = docimprint_job()
    frozen.state.faults.append(
        Fault(vendor="docimprint", path=POLL, status=429, retry_after=RETRY_AFTER[form](), times=1)
    )
    started = time.monotonic()
    assert (await poll(path, job)).state == "pending"
    assert time.monotonic() - started >= 0.9
    assert len(journal(frozen, POLL)) == 2


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("form", ["seconds", "HTTP date"])
async def test_a_retry_after_beyond_the_deadline_ends_the_retries_at_once(emulator, path, form):
    """Waiting an hour would pass the retry deadline (300 s by default): the hook gives up instead."""
    header = "3600" if form == "seconds" else http_date(3600)
    job = docimprint_job()
    emulator.state.faults.append(Fault(vendor="docimprint", path=POLL, status=429, retry_after=header))
    with pytest.raises(VendorTransientError, match="still failing after 1 attempts"):
        await poll(path, job)
    assert len(journal(emulator, POLL)) == 1


def test_the_retry_deadline_counts_the_time_already_spent(emulator, vendor_conn):
    """A 3.5 s deadline and 2 s waits: after the first wait at most 1.5 s is left, so no third attempt."""
    vendor_conn("docimprint", max_attempts=10, retry_deadline=3.5)
    job = docimprint_job()
    emulator.state.faults.append(Fault(vendor="docimprint", path=POLL, status=429, retry_after="2"))
    started = time.monotonic()
    with (
        DocimprintHook() as hook,
        pytest.raises(VendorTransientError, match="still failing after 2 attempts"),
    ):
        hook.get_job_status(job)
    assert time.monotonic() - started >= 2.0
    assert len(journal(emulator, POLL)) == 2


@pytest.mark.parametrize("path", PATHS)
async def test_a_backoff_that_would_pass_the_deadline_is_not_waited(emulator, vendor_conn, path):
    """Waits of 0.5 to 1 s and a 0.4 s deadline: the first 503 ends the retries at once."""
    strict = vendor_conn(
        "docimprint",
        conn_id="strict",
        max_attempts=5,
        retry_base_delay=1.0,
        retry_max_delay=1.0,
        retry_deadline=0.4,
    )
    job = docimprint_job()
    emulator.state.faults.append(Fault(vendor="docimprint", path=POLL, status=503))
    with pytest.raises(VendorTransientError, match="still failing after 1 attempts") as err:
        await poll(path, job, strict)
    assert err.value.status_code == 503
    assert err.value.job_id == job["job_id"]
    assert len(journal(emulator, POLL)) == 1


@pytest.mark.parametrize("path", PATHS)
async def test_a_slow_answer_times_out_and_is_retried(frozen, vendor_conn, path):
    slow = vendor_conn("docimprint", conn_id="slow", timeout=1.0)
    job = docimprint_job()
    # The late answer is the real one: a client that ignored its timeout would read it, in one request.
    frozen.state.faults.append(Fault(vendor="docimprint", path=POLL, delay=5.0, times=1))
    started = time.monotonic()
    assert (await poll(path, job, slow)).state == "pending"
    assert len(journal(frozen, POLL)) == 2  # the first attempt timed out, the second answered
    assert time.monotonic() - started < 5.0


@pytest.mark.parametrize("path", PATHS)
async def test_a_refused_connection_is_retried_then_raised(vendor_conn, refused_url, capfd, path):
    down = vendor_conn("docimprint", conn_id="down", fields={"host": refused_url}, max_attempts=3)
    with pytest.raises(VendorTransientError, match="still failing after 3 attempts") as err:
        await poll(path, {"job_id": "job_1"}, down)
    assert "could not connect to " + refused_url in str(err.value)
    assert "'down'" in str(err.value)
    retried = [line for line in capfd.readouterr().out.splitlines() if "; retry " in line]
    assert len(retried) == 2
    assert all("could not connect" in line for line in retried)
