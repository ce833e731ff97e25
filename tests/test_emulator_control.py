"""The /_emulator control API and the clock: faults, the journal, settings, stats, reset, frozen time."""

from __future__ import annotations

import asyncio
import time

import pytest
from test_emulator import (  # noqa: F401 (fixtures, used by name)
    BIROS,
    DOCIMPRINT,
    FINOVOX,
    INVOICES,
    KEY,
    MINDEE,
    app_fixture,
    biros_url,
    client_fixture,
    emu_fixture,
)

from airflow_docjobs.emulator import Emulator, EmulatorSettings, Fault

# -- faults ---------------------------------------------------------------------------------------------


async def test_fault_429_with_retry_after_then_normal(client, emu):
    emu.faults.append(
        Fault(vendor="biros", path="/predicted-documents/", status=429, retry_after="1", times=1)
    )
    first = await client.get(biros_url("x"), headers=BIROS)
    assert first.status_code == 429
    assert first.headers["retry-after"] == "1"
    assert "detail" in first.json()  # shaped like the vendor's own errors
    assert (await client.get(biros_url("x"), headers=BIROS)).status_code == 404  # used up: real handler
    assert emu.faults[0].used_up()


async def test_fault_503_over_http_is_used_up_after_times(client):
    fault = {"vendor": "docimprint", "path": "/v1/jobs", "method": "GET", "status": 503, "times": 2}
    assert (await client.post("/_emulator/faults", json=fault)).status_code == 201
    other_method = await client.post("/docimprint/v1/jobs", headers=DOCIMPRINT, json={"items": []})
    assert other_method.status_code == 422  # the fault only matches GET
    codes = [(await client.get("/docimprint/v1/jobs/job_x")).status_code for _ in range(3)]
    assert codes == [503, 503, 404]
    listed = (await client.get("/_emulator/faults")).json()["faults"]
    assert listed[0]["hits"] == 2
    assert (await client.delete("/_emulator/faults")).status_code == 204
    assert (await client.get("/_emulator/faults")).json() == {"faults": []}


async def test_fault_non_json_body_and_vendor_scope(client, emu):
    emu.faults.append(Fault(vendor="mindee", status=502, body="<html><h1>502 Bad Gateway</h1></html>"))
    response = await client.get(f"{INVOICES}/documents/queue/x", headers=MINDEE)
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert "Bad Gateway" in response.text
    # Other vendors are untouched.
    assert (
        await client.post("/finovox/retrieve", headers=FINOVOX, json={"retrieve_token": "x"})
    ).status_code == 404


async def test_fault_mindee_error_envelope(client, emu):
    emu.faults.append(Fault(vendor="*", status=429, times=1))
    response = await client.get(f"{INVOICES}/documents/queue/x", headers=MINDEE)
    assert response.status_code == 429
    assert response.json()["api_request"]["error"]["code"] == "TooManyRequests"


async def test_fault_delay_only_then_real_answer(client, emu):
    emu.faults.append(Fault(vendor="docimprint", delay=1.0, times=1))
    started = time.monotonic()
    response = await client.get("/docimprint/v1/jobs/job_x")
    assert time.monotonic() - started >= 1.0
    assert response.status_code == 404  # the real handler answered after the delay
    started = time.monotonic()
    await client.get("/docimprint/v1/jobs/job_x")
    assert time.monotonic() - started < 1.0  # the fault was used up (a loaded machine may take a while)


@pytest.mark.parametrize(
    "fault",
    [
        {"vendor": "acme"},
        {"status": 42},
        {"times": 0},
        {"delay": -1},
        {"colour": "red"},
        ["not", "an", "object"],
    ],
    ids=["vendor", "status", "times", "delay", "unknown-field", "not-object"],
)
async def test_invalid_fault_is_422(client, fault):
    assert (await client.post("/_emulator/faults", json=fault)).status_code == 422


# -- journal, settings, stats, reset ----------------------------------------------------------------------


async def test_journal_redacts_secrets_and_records_auth(client):
    await client.post("/finovox/retrieve", headers=FINOVOX, json={"retrieve_token": "x"})
    await client.get(f"{INVOICES}/documents/queue/x", headers={"Authorization": "Token wrong"})
    await client.get("/docimprint/v1/jobs/job_x?verbose=1")
    await client.get(biros_url("x", query="?include_validation_errors=true"), headers=BIROS)
    journal = (await client.get("/_emulator/requests")).json()
    assert [(e["vendor"], e["method"], e["authorized"]) for e in journal] == [
        ("finovox", "POST", True),
        ("mindee", "GET", False),
        ("docimprint", "GET", False),
        ("biros", "GET", True),
    ]
    assert journal[0]["path"] == "/finovox/retrieve"
    assert journal[0]["headers"]["api-key"] == "***"
    assert journal[1]["headers"]["authorization"] == "***"
    assert "x-payment" not in journal[2]["headers"]
    assert journal[2]["query"] == "verbose=1"
    assert journal[3]["headers"]["x-api-key"] == "***"
    assert journal[3]["query"] == "include_validation_errors=true"
    assert not [v for e in journal for k, v in e["headers"].items() if KEY in v and k != "host"]
    assert (await client.delete("/_emulator/requests")).status_code == 204
    assert (await client.get("/_emulator/requests")).json() == []


async def test_config_and_reset(client, emu):
    changed = await client.post(
        "/_emulator/config", json={"processing_seconds": 0, "api_key": "k2", "concurrency": 4}
    )
    assert changed.status_code == 200
    assert changed.json() | {"api_key": "k2"} == {
        "api_key": "k2",
        "processing_seconds": 0.0,
        "processing_seconds_max": 0.0,
        "result_ttl_seconds": 60.0,
        "review_seconds": 1.0,
        "concurrency": 4,
        "frozen_clock": False,
        "journal_limit": 10_000,
    }
    assert (await client.post("/_emulator/config", json={"processing_seconds": "soon"})).status_code == 422
    assert (await client.post("/_emulator/config", json={"nope": 1})).status_code == 422
    assert (await client.post("/_emulator/config", json={"concurrency": -1})).status_code == 422
    submit = await client.post(
        "/docimprint/v1/extract", headers={"X-Payment": "k2"}, json={"source": "https://x.test/a"}
    )
    job_id = submit.json()["job_id"]
    assert (await client.get(f"/docimprint/v1/jobs/{job_id}")).json()["status"] == "complete"
    emu.faults.append(Fault(status=500))
    assert (await client.post("/_emulator/reset")).status_code == 204
    assert emu.faults == []
    assert emu.requests == []
    assert emu.jobs == {}
    assert (await client.get(f"/docimprint/v1/jobs/{job_id}")).status_code == 404


async def test_stats_count_requests_and_jobs_until_reset(client):
    await client.post("/_emulator/bulk", json={"vendor": "biros", "count": 3})
    await client.post("/docimprint/v1/extract", headers=DOCIMPRINT, json={"source": "https://x.test/a"})
    await client.get("/docimprint/v1/jobs/job_x")
    # In-process, without a server, there are no connections to count.
    assert (await client.get("/_emulator/stats")).json() == {"requests": 2, "jobs": 4}
    await client.post("/_emulator/reset")
    assert (await client.get("/_emulator/stats")).json() == {"requests": 0, "jobs": 0}


async def test_the_journal_is_capped_but_the_request_count_is_not(client, emu):
    emu.settings.journal_limit = 2
    for _ in range(3):
        await client.get("/docimprint/v1/jobs/job_x")
    assert len(emu.requests) == 2
    assert emu.stats()["requests"] == 3


# -- the clock ------------------------------------------------------------------------------------------


def test_frozen_clock_moves_only_when_advanced():
    emulator = Emulator(EmulatorSettings(frozen_clock=True))
    start = emulator.now()
    time.sleep(0.02)
    assert emulator.now() == start
    emulator.advance(1.5)
    assert emulator.now() == start + 1.5


def test_freeze_and_thaw_never_jump():
    emulator = Emulator()
    emulator.advance(100)
    before = emulator.now()
    emulator.freeze()
    frozen = emulator.now()
    assert emulator.settings.frozen_clock
    assert 0 <= frozen - before < 0.1  # bounds a loaded machine keeps; a jump would be the 0.3 s slept
    time.sleep(0.3)
    emulator.settings.update({"frozen_clock": False})
    thawed = emulator.now()
    assert 0 <= thawed - frozen < 0.1  # it resumes where it stopped, not 0.3 s later
    time.sleep(0.02)
    assert emulator.now() - thawed >= 0.02


async def test_frozen_clock_over_config_holds_jobs_still(client, emu):
    assert (await client.post("/_emulator/config", json={"frozen_clock": True})).json()["frozen_clock"]
    emu.settings.processing_seconds = 0.01
    job_id = (
        await client.post("/docimprint/v1/extract", headers=DOCIMPRINT, json={"source": "https://x.test/a"})
    ).json()["job_id"]
    await asyncio.sleep(0.02)
    assert (await client.get(f"/docimprint/v1/jobs/{job_id}")).json()["status"] == "processing"
    emu.advance(0.01)
    assert (await client.get(f"/docimprint/v1/jobs/{job_id}")).json()["status"] == "complete"


async def test_freezing_over_http_stops_the_clock_at_once(client, emu):
    """A freeze takes effect when it is asked for, not at the next vendor request (a thaw likewise)."""
    await client.post("/_emulator/config", json={"frozen_clock": True})
    frozen = emu.now()
    await asyncio.sleep(0.05)
    assert emu.now() == frozen
    await client.post("/_emulator/config", json={"frozen_clock": False})
    await asyncio.sleep(0.05)
    await client.post("/_emulator/config", json={"frozen_clock": True})
    assert emu.now() >= frozen + 0.05  # the thawed 50 ms counted


async def test_the_journal_marks_a_request_whose_client_left_before_the_answer(emulator):
    """A caller killed mid-request (a worker lost mid-submit): the vendor took it, nobody read the answer."""
    import httpx
    from conftest import SECRET

    emulator.state.faults.append(Fault(vendor="docimprint", path="/v1/extract", delay=0.5))
    url, headers = f"{emulator.vendor_url('docimprint')}/v1/extract", {"X-Payment": SECRET}
    body = {"source": "https://example.com/a.pdf"}
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.TimeoutException):
            await client.post(url, headers=headers, json=body, timeout=0.1)  # gives up, closes the socket
        await asyncio.sleep(0.8)  # the emulator answers into the void
        assert (await client.post(url, headers=headers, json=body)).status_code == 202
    gone, answered = emulator.state.requests
    assert gone.get("client_gone") == "before-answer"
    assert "client_gone" not in answered
    assert len(emulator.state.jobs) == 2  # the vendor took both


async def test_job_durations_spread_and_lags_are_reported(client, emu):
    """processing_seconds_max: each job its own time, fixed by its key; /_emulator/lags: how late polls saw ends."""
    emu.settings.update({"processing_seconds": 1.0, "processing_seconds_max": 3.0})
    emu.freeze()
    jobs = [emu.new_job("docimprint", "extract", f"k{n}", frozenset()) for n in range(50)]
    durations = [job.duration for job in jobs]
    assert all(1.0 <= d < 3.0 for d in durations)
    assert max(durations) - min(durations) > 1.0
    assert emu.new_job("docimprint", "extract", "k7", frozenset()).duration == durations[7]
    emu.answered(jobs[0], emu.now())  # the first answer: nobody was waiting before
    emu.advance(3.5)
    emu.answered(jobs[0], emu.now())
    emu.answered(jobs[1], jobs[1].finished - 0.1)  # pending then: not counted
    lags = (await client.get("/_emulator/lags")).json()
    assert lags["jobs"] == 50
    assert lags["found"] == 1
    assert lags["worst_lag_s"] == lags["median_lag_s"] == pytest.approx(3.5 - durations[0])
    assert lags["p99_lag_s"] == lags["worst_lag_s"]
    assert lags["worst_ended_s"] == pytest.approx(durations[0])  # after the first answer, at 0
    assert lags["worst_lag_ended_later_s"] == lags["worst_lag_s"]
    # No concurrency limit: every job started at once, so the vendor's span is its longest job.
    assert lags["vendor_span_s"] == pytest.approx(max(durations))
    assert lags["found_after_span_s"] == pytest.approx(3.5 - max(durations))
    assert "late" not in lags
    # ?late_after=: which jobs were found later than that after their end, with their polls.
    late = (await client.get("/_emulator/lags", params={"late_after": 3.5 - durations[0] - 0.01})).json()
    assert late["late_count"] == 1
    assert late["late"] == [
        {
            "submitted": 0.0,
            "started": 0.0,
            "ended": pytest.approx(durations[0], abs=1e-3),
            "found": 3.5,
            "polls": 2,
        }
    ]
    assert (await client.get("/_emulator/lags", params={"late_after": 3.5})).json()["late"] == []
