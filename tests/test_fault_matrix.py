"""
The fault matrix of docs/reliability.md, row by row, against the emulator (and, where a vendor must
misbehave in a way the emulator cannot, a stand-in server on loopback): transient rows end in success,
permanent rows fail at once with the vendor's code and message and the connection id.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import json
import socket
import struct
import threading
import time
from contextlib import closing

import pendulum
import pytest
from conftest import copy_sample

from airflow_docjobs.emulator import Fault
from airflow_docjobs.exceptions import (
    VendorAuthError,
    VendorJobFailedError,
    VendorNotFoundError,
    VendorTransientError,
)
from airflow_docjobs.hooks.biros import BirosHook
from airflow_docjobs.hooks.docimprint import DocimprintHook
from airflow_docjobs.hooks.finovox import FinovoxHook
from airflow_docjobs.hooks.mindee import MindeeHook
from airflow_docjobs.hooks.mindee_v2 import MindeeV2Hook
from airflow_docjobs.sensors.docimprint import DocimprintJobSensor
from airflow_docjobs.sensors.mindee_v2 import MindeeV2JobSensor
from airflow_docjobs.triggers.job import DocJobTrigger

POLL = "/v1/jobs/"


def docimprint_job(name: str = "a.pdf") -> dict:
    with DocimprintHook() as hook:
        return hook.job_reference(hook.submit(f"https://example.com/{name}"))


def http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


TRANSIENT_POLLS = {
    "429 + Retry-After seconds": [
        Fault(vendor="docimprint", path=POLL, status=429, retry_after="1", times=1)
    ],
    # The date is written when the fault is added (see the test), so it is still ahead then.
    "429 + Retry-After date": [Fault(vendor="docimprint", path=POLL, status=429, retry_after="+3", times=1)],
    "429 without Retry-After": [Fault(vendor="docimprint", path=POLL, status=429, times=1)],
    "502 503 504 burst": [Fault(vendor="docimprint", path=POLL, status=s, times=1) for s in (502, 503, 504)],
    "slower than the timeout": [Fault(vendor="docimprint", path=POLL, delay=1.5, times=1)],
    "200 with an HTML page": [
        Fault(vendor="docimprint", path=POLL, status=200, body="<html>proxy</html>", times=1)
    ],
    "200 with a truncated body": [
        Fault(vendor="docimprint", path=POLL, status=200, body='{"job_id": "x", "sta', times=1)
    ],
}


@pytest.mark.parametrize("row", list(TRANSIENT_POLLS))
async def test_transient_answers_on_a_poll_end_in_success(emulator, monkeypatch, row):
    """What the hook cannot retry within one poll (a garbled 200) the trigger counts and polls again."""
    extra = {"retry_base_delay": 0.01, "retry_max_delay": 0.05, "max_attempts": 5, "timeout": 0.5}
    monkeypatch.setenv("AIRFLOW_CONN_DOCIMPRINT_DEFAULT", emulator.connection_json("docimprint", **extra))
    job = docimprint_job()
    emulator.state.advance(5)
    for fault in TRANSIENT_POLLS[row]:
        dated = fault.retry_after and fault.retry_after.startswith("+")
        retry_after = http_date(float(fault.retry_after)) if dated else fault.retry_after
        emulator.state.faults.append(dataclasses.replace(fault, retry_after=retry_after))
    trigger = DocJobTrigger(
        hook_class="airflow_docjobs.hooks.docimprint.DocimprintHook",
        conn_id="docimprint_default",
        deadline=pendulum.now("UTC").add(seconds=30).isoformat(),
        poll_interval=0.05,
        job=job,
    )
    started = time.monotonic()
    event = await asyncio.wait_for(anext(trigger.run()), 30)
    assert event.payload == {"status": "success"}
    assert all(fault.used_up() for fault in emulator.state.faults)
    if row.startswith("429 + "):  # with the date form, at least 2 of the 3 seconds remain (1 s resolution)
        assert time.monotonic() - started >= 0.9  # the vendor's wait was honoured, not the 10 ms backoff


@pytest.mark.parametrize("status", [502, 503, 504])
def test_a_burst_on_submits_ends_in_one_job(emulator, status):
    emulator.state.faults.append(Fault(vendor="docimprint", path="/v1/extract", status=status, times=2))
    with DocimprintHook() as hook:
        assert hook.submit("https://example.com/a.pdf")
    assert len(emulator.state.requests) == 3
    assert emulator.state.stats()["jobs"] == 1


class RawVendor:
    """A vendor misbehaving below HTTP on a loopback port: it answers every request with ``answer``."""

    def __init__(self, answer: bytes, reset: bool = False) -> None:
        self.answer, self.reset, self.requests = answer, reset, 0

    def __enter__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def _serve(self):
        with closing(self.sock):
            while True:
                try:
                    conn, _ = self.sock.accept()
                except OSError:
                    return
                with closing(conn):
                    conn.recv(65536)
                    self.requests += 1
                    conn.sendall(self.answer)
                    if self.reset:  # close with RST, in the middle of the announced body
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def __exit__(self, *exc):
        self.sock.close()


def test_a_connection_reset_mid_answer_is_retried_then_counted(monkeypatch):
    half = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{"job'
    with RawVendor(half, reset=True) as vendor:
        conn = {"conn_type": "docimprint", "host": f"http://127.0.0.1:{vendor.port}", "password": "k"}
        conn["extra"] = {"retry_base_delay": 0.01, "max_attempts": 3}
        monkeypatch.setenv("AIRFLOW_CONN_HALF", json.dumps(conn))
        with DocimprintHook("half") as hook, pytest.raises(VendorTransientError, match="3 attempts") as err:
            hook.get_job_status({"job_id": "job_1"})
        assert vendor.requests == 3
        assert "'half'" in str(err.value)


def test_a_mindee_redirect_to_another_host_carries_no_credentials(emulator, tmp_path, monkeypatch):
    with MindeeHook() as hook:
        job_id = hook.submit(str(copy_sample(tmp_path, "a.pdf")), product="invoices", version="v4")
    document_id = emulator.state.get("mindee", job_id).data["document_id"]
    elsewhere = f"{emulator.url}/mindee/v1/products/mindee/invoices/v4/documents/{document_id}"
    redirect = f"HTTP/1.1 302 Found\r\nLocation: {elsewhere}\r\nContent-Length: 0\r\n\r\n".encode()
    with RawVendor(redirect) as queue:
        conn = {
            "conn_type": "mindee",
            "host": f"http://localhost:{queue.port}/mindee",
            "password": "emulator",
        }
        monkeypatch.setenv("AIRFLOW_CONN_QUEUE", json.dumps(conn))
        emulator.state.advance(5)
        emulator.state.requests.clear()
        with MindeeHook("queue") as hook, pytest.raises(VendorAuthError):
            hook.get_job_status(hook.job_reference(job_id, "invoices", "v4"))
    assert queue.requests == 1
    (document,) = emulator.state.requests  # the other host got the request, without the key
    assert not document["authorized"]
    assert "authorization" not in document["headers"]


def test_an_expired_finovox_result_reads_pending_until_the_deadline(emulator, tmp_path):
    emulator.state.settings.update({"result_ttl_seconds": 1})
    with FinovoxHook() as hook:
        job = hook.job_reference(hook.submit(str(copy_sample(tmp_path, "a.pdf"))))
        emulator.state.advance(5)
        assert hook.get_job_status(job).state == "pending"  # gone: Finovox says "not ready" for it


@pytest.mark.parametrize(
    ("make_job", "error", "status"),
    [
        (
            lambda: FinovoxHook.job_reference("gAAAAABnot-a-real-token-" + "x" * 80, "case"),
            VendorNotFoundError,
            404,
        ),
        (lambda: FinovoxHook.job_reference("not-fernet", "case"), VendorAuthError, 401),
        (
            lambda: MindeeHook.job_reference("00000000-0000-0000-0000-000000000000", "invoices", "v4"),
            VendorNotFoundError,
            404,
        ),
        (lambda: DocimprintHook.job_reference("job_unknown"), VendorNotFoundError, 404),
        (lambda: BirosHook.job_reference("doc-unknown", "svc-1"), VendorNotFoundError, 404),
    ],
    ids=[
        "finovox case unknown",
        "finovox case bad token",
        "mindee unknown",
        "docimprint unknown",
        "biros unknown",
    ],
)
def test_permanent_answers_fail_at_once_naming_the_connection(emulator, make_job, error, status):
    job = make_job()
    hook_class = {"retrieve_token": FinovoxHook, "product": MindeeHook, "service_id": BirosHook}
    hook = next((h for key, h in hook_class.items() if key in job), DocimprintHook)()
    with hook, pytest.raises(error) as err:
        hook.get_job_status(job)
    assert err.value.status_code == status
    assert "_default'" in str(err.value)
    assert len(emulator.state.requests) == 1  # not retried


def test_a_finovox_token_of_another_user_is_refused(emulator, tmp_path, monkeypatch):
    with FinovoxHook() as hook:
        job = hook.job_reference(
            hook.submit([str(copy_sample(tmp_path, "a.pdf"))], analysis="case", use_case="rental"), "case"
        )
    emulator.state.settings.update({"api_key": "another-user"})
    monkeypatch.setenv("AIRFLOW_CONN_FINOVOX_DEFAULT", emulator.connection_json("finovox"))
    with FinovoxHook() as hook, pytest.raises(VendorAuthError) as err:
        hook.get_job_status(job)
    assert err.value.status_code == 403
    assert "another user" in str(err.value)


def test_a_vendor_failure_carries_the_vendor_code_and_message(emulator):
    job = docimprint_job("fail.pdf")
    emulator.state.advance(5)
    sensor = DocimprintJobSensor(task_id="wait", job_id=job["job_id"])
    with DocimprintHook() as hook:
        status = hook.get_job_status(job)
    error = sensor._job_failed(status.message, status.code)
    assert isinstance(error, VendorJobFailedError)
    assert error.code == "extract_failed"
    assert "[extract_failed]" in str(error)
    assert "Could not extract" in str(error)


def test_a_mindee_v2_failed_job_keeps_the_problem_code_and_detail_and_an_unknown_one_is_404(
    emulator, tmp_path
):
    with MindeeV2Hook() as hook:
        job = hook.job_reference(hook.submit(str(copy_sample(tmp_path, "fail.pdf")), model_id="m-1"))
        emulator.state.advance(5)
        status = hook.get_job_status(job)
        with pytest.raises(VendorNotFoundError) as unknown:
            hook.get_job_status({"job_id": "00000000-0000-0000-0000-000000000000"})
    assert (status.state, status.code, status.message) == (
        "failed",
        "500-001",
        "The document could not be processed.",
    )
    error = MindeeV2JobSensor(task_id="wait", job_id=job["job_id"])._job_failed(status.message, status.code)
    assert isinstance(error, VendorJobFailedError)
    assert error.code == "500-001"
    assert "The document could not be processed." in str(error)
    assert unknown.value.status_code == 404
    assert "'mindee_v2_default'" in str(unknown.value)


def test_a_mybiros_failure_carries_a_code(emulator, tmp_path):
    """myBiros has no error code: its document status ERROR is the code, never an empty one."""
    with BirosHook() as hook:
        document = hook.submit(str(copy_sample(tmp_path, "fail.pdf")), service_id="id-cards")
        emulator.state.advance(5)
        status = hook.get_job_status(hook.job_reference(document, service_id="id-cards"))
    assert status.state == "failed"
    assert status.code == "ERROR"
    assert status.message
