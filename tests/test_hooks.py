"""
Every hook, sync and async, against the emulator on a loopback port: the life cycle, errors, and when a
submit is sent again. Retries of reads are in ``test_hooks_retries.py``, uploads in
``test_hooks_uploads.py``, inputs and connection settings in ``test_hooks_inputs.py``.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import pytest
import uvicorn
from conftest import KIND_IDS, KINDS, PATIENCE, SECRET, Kind, copy_sample, journal
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from airflow_docjobs.emulator import Fault
from airflow_docjobs.exceptions import (
    VendorAPIError,
    VendorAuthError,
    VendorJobFailedError,
    VendorNotFoundError,
    VendorRequestError,
    VendorTransientError,
)
from airflow_docjobs.hooks.base import MAX_POLL_REQUESTS
from airflow_docjobs.hooks.biros import BirosHook
from airflow_docjobs.hooks.docimprint import DocimprintHook
from airflow_docjobs.hooks.finovox import FinovoxHook
from airflow_docjobs.hooks.mindee import MindeeHook

if TYPE_CHECKING:
    from starlette.requests import Request

FAILING = [kind for kind in KINDS if kind.name != "finovox"]  # Finovox documents have no failed state
RESENT_WARNING = "may have created a job"


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_sync_life_cycle_pending_then_succeeded(frozen, tmp_path, kind):
    with kind.hook() as hook:
        job = kind.submit(hook, tmp_path, "payslip.pdf")
        assert hook.get_job_status(job).state == "pending"
        frozen.state.advance(5)
        status = hook.get_job_status(job)
    assert status.state == "succeeded"
    assert isinstance(status.result, dict)
    assert status.result
    # Every request carried the secret header (the journal shows it was sent, never its value).
    requests = journal(frozen, f"/{kind.vendor}/")
    assert len(requests) >= 3
    assert all(r["authorized"] for r in requests)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
async def test_async_life_cycle_pending_then_succeeded(frozen, tmp_path, kind):
    async with kind.hook() as hook:
        job = await kind.asubmit(hook, tmp_path, "payslip.pdf")
        assert (await hook.aget_job_status(job)).state == "pending"
        frozen.state.advance(5)
        status = await hook.aget_job_status(job)
    assert status.state == "succeeded"
    assert status.result
    assert frozen.connections == 1  # submit and polls through one pooled connection: no handshake per poll


@pytest.mark.parametrize("kind", FAILING, ids=[kind.name for kind in FAILING])
def test_vendor_reported_failure(frozen, tmp_path, kind):
    with kind.hook() as hook:
        job = kind.submit(hook, tmp_path, "fail-scan.pdf")
        frozen.state.advance(5)
        status = hook.get_job_status(job)
    assert status.state == "failed"
    assert status.message


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_never_stays_pending(emulator, tmp_path, kind):
    with kind.hook() as hook:
        job = kind.submit(hook, tmp_path, "never.pdf")
        emulator.state.advance(3600)
        assert hook.get_job_status(job).state == "pending"


def test_progress_is_reported(frozen):
    with DocimprintHook() as hook:
        job = hook.job_reference(hook.submit("https://example.com/a.pdf"))
        frozen.state.advance(0.25)  # half of the 0.5 s the job takes
        status = hook.get_job_status(job)
    assert status.state == "pending"
    assert status.progress.startswith("50%")


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_wrong_secret_fails_at_once_naming_the_connection(emulator, vendor_conn, tmp_path, kind):
    bad = vendor_conn(kind.vendor, conn_id="bad", fields={"password": "s3cr3t-value"})
    hook = kind.hook(**{kind.hook.conn_name_attr: bad})
    with pytest.raises(VendorAuthError) as err:
        kind.submit(hook, tmp_path, "doc.pdf")
    assert "'bad'" in str(err.value)
    assert "s3cr3t-value" not in str(err.value)
    assert err.value.status_code == (402 if kind.vendor == "docimprint" else 401)  # docimprint: 402
    assert len(journal(emulator, f"/{kind.vendor}/")) == 1  # no retry


def test_unknown_job_is_not_found(emulator):
    with DocimprintHook() as hook, pytest.raises(VendorNotFoundError) as err:
        hook.get_job_status({"job_id": "job_missing"})
    assert err.value.job_id == "job_missing"
    assert "'docimprint_default'" in str(err.value)


def test_finovox_case_500_is_a_failed_folder_not_a_retry(emulator, tmp_path):
    with FinovoxHook() as hook:
        job = hook.job_reference(
            hook.submit([str(copy_sample(tmp_path, "fail.pdf"))], analysis="case", use_case="rental"), "case"
        )
        emulator.state.advance(5)
        emulator.state.requests.clear()
        status = hook.get_job_status(job)
    assert status.state == "failed"
    assert "failed" in status.message
    assert len(emulator.state.requests) == 1


def test_an_expired_finovox_token_reads_pending(frozen, tmp_path):
    """Finovox deletes a result after its TTL and then answers as for a token not ready: pending, no error."""
    ttl = frozen.state.settings.result_ttl_seconds
    with FinovoxHook() as hook:
        job = hook.job_reference(hook.submit(str(copy_sample(tmp_path, "a.pdf"))))
        frozen.state.advance(5)
        assert hook.get_job_status(job).state == "succeeded"
        frozen.state.advance(ttl)
        assert hook.get_job_status(job).state == "pending"
    assert [r["path"] for r in journal(frozen, "/retrieve")] == ["/finovox/retrieve"] * 2


def test_finovox_token_stays_out_of_descriptions(emulator, sample_pdf):
    with FinovoxHook() as hook:
        token = hook.submit(str(sample_pdf))
        assert token not in hook.describe_job(hook.job_reference(token))


def test_finovox_case_result_and_share_link(emulator, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    copy_sample(folder, "id_card.pdf")
    copy_sample(folder, "payslip.pdf")
    (folder / "applicant.json").write_text('{"name": "Julien Moreau"}')
    (folder / ".DS_Store").write_text("hidden files are skipped")
    with FinovoxHook() as hook:
        token = hook.submit(
            str(folder), analysis="case", use_case="rental", analyse_type=["decision", "share_link"]
        )
        emulator.state.advance(5)
        status = hook.get_job_status(hook.job_reference(token, "case"))
    assert status.result["decision"]["status"] == "approved"
    assert status.result["share_link"]["url"].startswith(emulator.url)
    upload = journal(emulator, "/finovox/case", "POST")[0]
    assert upload["headers"]["api-key"] == "***"


def test_mindee_redirect_is_followed_with_credentials_on_the_same_host(emulator, tmp_path):
    mindee = next(kind for kind in KINDS if kind.name == "mindee")
    with MindeeHook() as hook:
        job = mindee.submit(hook, tmp_path, "doc.pdf")
        emulator.state.advance(5)
        emulator.state.requests.clear()
        status = hook.get_job_status(job)
    queue, document = emulator.state.requests
    assert "/documents/queue/" in queue["path"]
    assert document["path"].endswith(status.result["document"]["id"])
    assert document["authorized"]


def test_a_redirect_without_location_is_a_vendor_error(emulator):
    emulator.state.faults.append(Fault(vendor="mindee", path="/documents/queue/", status=302))
    with MindeeHook() as hook, pytest.raises(VendorAPIError, match="redirected without a Location"):
        hook.get_job_status(MindeeHook.job_reference("job-1", "invoices", "v4"))


@pytest.fixture
def redirect_loop():
    """
    A stand-in vendor on loopback that redirects every request to itself (the emulator's faults cannot
    set a Location). Past 10 rounds of the bound it answers with a document, so an unbounded client ends
    with a result instead of hanging the suite.
    """
    seen: list[str] = []

    async def answer(request: Request) -> Response:
        seen.append(request.url.path)
        if len(seen) > 10 * MAX_POLL_REQUESTS:
            return JSONResponse({"document": {"id": "doc"}, "job": {"status": "completed"}})
        return Response(status_code=302, headers={"Location": request.url.path})

    app = Starlette(routes=[Route("/{path:path}", answer)])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, name="redirect-loop", daemon=True)
    thread.start()
    deadline = time.monotonic() + PATIENCE
    while not server.started:
        assert thread.is_alive(), "the stand-in vendor did not start"
        assert time.monotonic() < deadline, "the stand-in vendor did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/mindee", seen
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.parametrize("path", ["sync", "async"])
async def test_a_redirect_loop_ends_the_poll_after_a_bounded_number_of_requests(
    vendor_conn, redirect_loop, path
):
    url, seen = redirect_loop
    hook = MindeeHook(vendor_conn("mindee", conn_id="looping", fields={"host": url}))
    job = MindeeHook.job_reference("job-1", "invoices", "v4")

    async def poll() -> None:
        if path == "sync":
            with hook:
                hook.get_job_status(job)
        else:
            async with hook:
                await hook.aget_job_status(job)

    with pytest.raises(VendorAPIError, match="kept redirecting") as err:
        await poll()
    assert len(seen) == MAX_POLL_REQUESTS, seen
    assert err.value.job_id == "job-1"
    assert "'looping'" in str(err.value)


def test_vendor_job_failed_error_does_not_retry():
    from airflow.providers.common.compat.sdk import AirflowFailException

    assert issubclass(VendorJobFailedError, AirflowFailException)


def test_a_vendor_echoing_the_secret_does_not_leak_it(emulator, tmp_path):
    emulator.state.faults.append(Fault(vendor="biros", status=401, body=f"invalid key {SECRET} for service"))
    with BirosHook() as hook, pytest.raises(VendorAuthError) as err:
        hook.submit(str(copy_sample(tmp_path, "a.pdf")), service_id="svc-1")
    assert SECRET not in str(err.value)
    assert "invalid key *** for service" in str(err.value)


# ---- when a submit (a billed job) is sent again ---------------------------------------------------------

# The vendors' documented answers that say the job was not taken; after any other trouble it may exist.
NOT_TAKEN = {"429": {"status": 429, "retry_after": "0"}, "503": {"status": 503}}
# The read timeout's late answer is an error too, so it creates no job in a later test.
MAY_EXIST = {"502": {"status": 502}, "504": {"status": 504}, "read timeout": {"delay": 5.0, "status": 504}}
MODES = {"default": "true", "strict": "false"}  # the resend_ambiguous_submits connection extra


async def submit_once(kind: Kind, path: str, tmp_path) -> tuple[dict, int | None]:
    """Submit one document through the sync or async hook: the job and, on the sync path, its resends."""
    if path == "sync":
        with kind.hook() as hook:
            return kind.submit(hook, tmp_path, "doc.pdf"), hook.last_resends()
    async with kind.hook() as hook:
        return await kind.asubmit(hook, tmp_path, "doc.pdf"), None


def warnings_in(capfd) -> list[str]:
    return [line for line in capfd.readouterr().out.splitlines() if RESENT_WARNING in line]


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("path", ["sync", "async"])
@pytest.mark.parametrize("answer", list(NOT_TAKEN))
@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
async def test_a_submit_is_resent_when_the_vendor_did_not_take_it(
    emulator, vendor_conn, tmp_path, capfd, kind, answer, path, mode
):
    """429 and 503 say the vendor did not take the job: resent in either mode, without a warning."""
    vendor_conn(kind.vendor, resend_ambiguous_submits=MODES[mode])
    emulator.state.faults.append(
        Fault(vendor=kind.vendor, path=kind.submit_path, times=1, **NOT_TAKEN[answer])
    )
    job, resends = await submit_once(kind, path, tmp_path)
    assert job
    assert resends in (0, None)
    submits = kind.submits(emulator)
    assert len(submits) == 2
    assert emulator.state.stats()["jobs"] == 1
    assert warnings_in(capfd) == []


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("path", ["sync", "async"])
@pytest.mark.parametrize("answer", list(MAY_EXIST))
@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
async def test_a_submit_after_an_answer_that_may_have_created_a_job(
    emulator, vendor_conn, tmp_path, capfd, kind, answer, path, mode
):
    """Resent by default, with a warning; with resend_ambiguous_submits=false the task fails instead."""
    # A read timeout needs a client timeout well below the fault's delay, and above a normal answer.
    vendor_conn(kind.vendor, timeout=1.0, resend_ambiguous_submits=MODES[mode])
    emulator.state.faults.append(
        Fault(vendor=kind.vendor, path=kind.submit_path, times=1, **MAY_EXIST[answer])
    )
    if mode == "strict":
        with pytest.raises(VendorTransientError, match="may exist, so it is not resent"):
            await submit_once(kind, path, tmp_path)
    else:
        job, resends = await submit_once(kind, path, tmp_path)
        assert job
        assert resends in (1, None)
    submits = kind.submits(emulator)
    assert len(submits) == (1 if mode == "strict" else 2)
    assert emulator.state.stats()["jobs"] == (0 if mode == "strict" else 1)
    warned = warnings_in(capfd)
    assert len(warned) == (0 if mode == "strict" else 1)
    assert all("warning" in line for line in warned)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("path", ["sync", "async"])
@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
async def test_a_submit_that_never_connected_is_resent(
    emulator, vendor_conn, refused_url, tmp_path, capfd, kind, path, mode
):
    """A refused connection sent nothing: every attempt is made, in either mode, without a warning."""
    vendor_conn(
        kind.vendor, fields={"host": refused_url}, max_attempts=3, resend_ambiguous_submits=MODES[mode]
    )
    with pytest.raises(VendorTransientError, match="still failing after 3 attempts") as err:
        await submit_once(kind, path, tmp_path)
    assert "could not connect" in str(err.value)
    lines = capfd.readouterr().out.splitlines()
    assert len([line for line in lines if "could not connect" in line and "; retry " in line]) == 2
    assert not [line for line in lines if RESENT_WARNING in line]


def test_a_submit_is_never_resent_after_a_refusal(emulator, tmp_path):
    emulator.state.faults.append(Fault(vendor="biros", path="/async-predict", status=422, times=1))
    with BirosHook() as hook, pytest.raises(VendorRequestError):
        hook.submit(str(copy_sample(tmp_path, "a.pdf")), service_id="svc-1")
    assert len(journal(emulator, "/async-predict")) == 1
