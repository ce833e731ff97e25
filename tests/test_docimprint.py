"""
docimprint as its own client speaks it: file uploads, API keys as ``Authorization: Bearer``, job states.

The official ``docimprint`` client runs against the emulator, and our hook sends what it sends.
"""

from __future__ import annotations

import types

import pytest
from conftest import SECRET, journal
from docimprint import DocImprintClient, DocImprintError
from test_trigger import first_event, trigger_for

from airflow_docjobs.exceptions import DocJobsInputError
from airflow_docjobs.hooks.calls import FAILED, SUCCEEDED
from airflow_docjobs.hooks.docimprint import DocimprintHook


@pytest.fixture
def official(frozen, monkeypatch):
    """The official client on the frozen emulator; its sleeps between polls move the emulator's clock."""
    import docimprint.client

    clock = types.SimpleNamespace(sleep=frozen.state.advance, monotonic=frozen.state.now)
    monkeypatch.setattr(docimprint.client, "time", clock)
    with DocImprintClient(SECRET, base_url=frozen.vendor_url("docimprint")) as client:
        yield client


def test_the_official_client_extracts_by_url_and_by_file(official, frozen, sample_pdf):
    by_url = official.extract(url="https://example.com/lease.pdf", async_=True)
    by_file = official.extract(file=sample_pdf.read_bytes(), async_=True)
    inline = official.extract(url="https://example.com/lease.pdf")  # its default: ?sync=true
    for job in (by_url, by_file, inline):
        assert job["status"] == "complete"
        assert job["bundle_id"].startswith("ev_")
    assert inline["bundle_id"] == by_url["bundle_id"]
    # The two waits polled until the jobs were done, as the client does: queued, then complete.
    polls = journal(frozen, "/docimprint/v1/jobs/", "GET")
    assert len(polls) >= 4
    assert all(r["headers"]["authorization"] == "***" for r in journal(frozen, "/docimprint/"))
    upload = journal(frozen, "/docimprint/v1/extract", "POST")[1]
    assert upload["headers"]["content-type"].startswith("multipart/form-data")


def test_the_official_client_reads_a_failed_job(official):
    with pytest.raises(DocImprintError) as err:
        official.extract(url="https://example.com/fail.pdf", async_=True)
    assert err.value.code == "extract_failed"
    assert (
        err.value.message
        == "Could not extract https://example.com/fail.pdf: the document could not be parsed"
    )


def test_the_hook_uploads_a_file_with_an_api_key(emulator, vendor_conn, sample_pdf):
    vendor_conn("docimprint", auth="api_key")
    with DocimprintHook() as hook:
        job = hook.job_reference(hook.submit(str(sample_pdf)))
        emulator.state.advance(5)
        status = hook.get_job_status(job)
    assert status.state == SUCCEEDED
    assert status.result["bundle_id"].startswith("ev_")
    submit = journal(emulator, "/docimprint/v1/extract", "POST")[0]
    assert submit["authorized"]
    assert "x-payment" not in submit["headers"]
    assert submit["headers"]["authorization"] == "***"
    assert submit["headers"]["content-type"].startswith("multipart/form-data")
    assert submit["query"] == "async=true"


def test_the_payment_token_stays_the_default(emulator, sample_pdf):
    with DocimprintHook() as hook:
        hook.submit(str(sample_pdf))
    assert journal(emulator, "/docimprint/v1/extract")[0]["headers"]["x-payment"] == "***"


def test_an_unknown_auth_extra_is_named(emulator, vendor_conn):
    vendor_conn("docimprint", auth="bearer")
    with pytest.raises(DocJobsInputError, match="extra 'auth' must be 'x402' or 'api_key', got 'bearer'"):
        DocimprintHook().submit("https://example.com/a.pdf")
    assert emulator.state.requests == []


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (
            {"status": "failed", "error": "Unsupported PDF", "code": "invalid_pdf"},
            "invalid_pdf",
            "Unsupported PDF",
        ),
        ({"status": "error", "error": "Out of credits"}, None, "Out of credits"),
        ({"status": "cancelled", "error": None}, None, "the job ended cancelled"),
        ({"status": "failed", "error": {"code": "x", "message": "m"}}, "x", "m"),
    ],
    ids=["failed", "error", "cancelled-without-words", "error-object"],
)
def test_every_end_state_is_read(body, code, message):
    import httpx

    hook = DocimprintHook()
    status = hook.read_poll({"job_id": "job_1"}, httpx.Response(200, json={"job_id": "job_1", **body}))
    assert (status.state, status.code, status.message) == (FAILED, code, message)
    done = hook.read_poll({"job_id": "job_1"}, httpx.Response(200, json={"status": "completed"}))
    assert done.state == SUCCEEDED


async def test_a_cancelled_job_ends_the_wait_as_failed_with_its_code(frozen):
    with DocimprintHook() as hook:
        job = hook.job_reference(hook.submit("https://example.com/cancel.pdf"))
    frozen.state.advance(5)
    event = await first_event(trigger_for(job))
    assert event["status"] == "failed"
    assert event["code"] == "job_cancelled"
    assert event["message"] == "The job was cancelled before it completed"
