"""Every hook, sync and async, against the emulator on a loopback port: life cycle, errors, retries, inputs."""

from __future__ import annotations

import base64
import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from conftest import FAST_RETRIES, SECRET, copy_sample

from airflow_docjobs.emulator import Fault
from airflow_docjobs.exceptions import (
    DocJobsInputError,
    VendorAPIError,
    VendorAuthError,
    VendorJobFailedError,
    VendorNotFoundError,
    VendorRequestError,
    VendorTransientError,
)
from airflow_docjobs.hooks.base import Call, DocJobsHook
from airflow_docjobs.hooks.biros import BirosHook
from airflow_docjobs.hooks.docimprint import DocimprintHook
from airflow_docjobs.hooks.finovox import FinovoxHook
from airflow_docjobs.hooks.mindee import MindeeHook


@dataclass
class Vendor:
    """How to submit a document named ``name`` to one vendor and build the job reference."""

    name: str
    hook: type[DocJobsHook]
    poll_path: str

    def submit(self, hook: Any, tmp_path, name: str) -> dict[str, Any]:
        doc = str(copy_sample(tmp_path, name))
        if self.name == "finovox":
            return hook.job(hook.submit_document(doc))
        if self.name == "finovox-case":
            return hook.job(hook.submit_case([doc], "rental"), "case")
        if self.name == "mindee":
            return hook.job(hook.enqueue(doc, "invoices", "v4"), "invoices", "v4")
        if self.name == "docimprint":
            return hook.job(hook.submit_source(f"https://example.com/{name}"))
        return hook.job("svc-1", hook.submit_document(doc, "svc-1"))

    async def asubmit(self, hook: Any, tmp_path, name: str) -> dict[str, Any]:
        doc = str(copy_sample(tmp_path, name))
        if self.name == "finovox":
            return hook.job(await hook.asubmit_document(doc))
        if self.name == "finovox-case":
            return hook.job(await hook.asubmit_case([doc], "rental"), "case")
        if self.name == "mindee":
            return hook.job(await hook.aenqueue(doc, "invoices", "v4"), "invoices", "v4")
        if self.name == "docimprint":
            return hook.job(await hook.asubmit_source(f"https://example.com/{name}"))
        return hook.job("svc-1", await hook.asubmit_document(doc, "svc-1"))


VENDORS = [
    Vendor("finovox", FinovoxHook, "/retrieve"),
    Vendor("finovox-case", FinovoxHook, "/case/retrieve"),
    Vendor("mindee", MindeeHook, "/documents/queue/"),
    Vendor("docimprint", DocimprintHook, "/v1/jobs/"),
    Vendor("biros", BirosHook, "/predicted-documents/"),
]
FAILING = [v for v in VENDORS if v.name != "finovox"]  # Finovox documents have no failed state
ids = [v.name for v in VENDORS]


def vendor_of(v: Vendor) -> str:
    return v.name.split("-")[0]


@pytest.mark.parametrize("vendor", VENDORS, ids=ids)
def test_sync_life_cycle_pending_then_succeeded(emulator, tmp_path, vendor):
    with vendor.hook() as hook:
        job = vendor.submit(hook, tmp_path, "payslip.pdf")
        assert hook.get_job_status(job).state == "pending"
        emulator.state.advance(5)
        status = hook.get_job_status(job)
    assert status.state == "succeeded"
    assert isinstance(status.result, dict) and status.result
    # The whole life cycle used one client: every request carried the secret header, none its value.
    journal = [r for r in emulator.state.requests if r["vendor"] == vendor_of(vendor)]
    assert journal and all(r["authorized"] for r in journal)


@pytest.mark.parametrize("vendor", VENDORS, ids=ids)
async def test_async_life_cycle_pending_then_succeeded(emulator, tmp_path, vendor):
    async with vendor.hook() as hook:
        job = await vendor.asubmit(hook, tmp_path, "payslip.pdf")
        assert (await hook.aget_job_status(job)).state == "pending"
        client = hook._async_client
        emulator.state.advance(5)
        status = await hook.aget_job_status(job)
        assert hook._async_client is client  # no new client, lookup or handshake per poll
    assert status.state == "succeeded"
    assert status.result


@pytest.mark.parametrize("vendor", FAILING, ids=[v.name for v in FAILING])
def test_vendor_reported_failure(emulator, tmp_path, vendor):
    with vendor.hook() as hook:
        job = vendor.submit(hook, tmp_path, "fail-scan.pdf")
        emulator.state.advance(5)
        status = hook.get_job_status(job)
    assert status.state == "failed"
    assert status.message


@pytest.mark.parametrize("vendor", VENDORS, ids=ids)
def test_never_stays_pending(emulator, tmp_path, vendor):
    with vendor.hook() as hook:
        job = vendor.submit(hook, tmp_path, "never.pdf")
        emulator.state.advance(3600)
        assert hook.get_job_status(job).state == "pending"


def test_progress_is_reported(emulator, tmp_path):
    with DocimprintHook() as hook:
        job = hook.job(hook.submit_source("https://example.com/a.pdf"))
        emulator.state.advance(0.25)
        status = hook.get_job_status(job)
    assert status.state == "pending" and "%" in status.progress


@pytest.mark.parametrize("vendor", VENDORS, ids=ids)
def test_wrong_secret_fails_at_once_naming_the_connection(emulator, tmp_path, monkeypatch, vendor):
    name = vendor_of(vendor)
    monkeypatch.setenv("AIRFLOW_CONN_BAD", emulator.connection_json(name).replace(SECRET, "s3cr3t-value"))
    hook = vendor.hook(**{vendor.hook.conn_name_attr: "bad"})
    with pytest.raises(VendorAuthError if name != "docimprint" else VendorRequestError) as err:
        vendor.submit(hook, tmp_path, "doc.pdf")
    assert "'bad'" in str(err.value) and "s3cr3t-value" not in str(err.value)
    assert err.value.status_code in (401, 402)
    assert len([r for r in emulator.state.requests if r["vendor"] == name]) == 1  # no retry


def test_connection_without_secret_is_refused_before_any_request(emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_EMPTY", json.dumps({"conn_type": "mindee", "host": emulator.url}))
    with pytest.raises(DocJobsInputError, match=r"API key.*'empty'"):
        MindeeHook("empty").get_conn()
    assert emulator.state.requests == []


@pytest.mark.parametrize("vendor", VENDORS, ids=ids)
def test_429_with_retry_after_is_retried(emulator, tmp_path, vendor):
    with vendor.hook() as hook:
        job = vendor.submit(hook, tmp_path, "doc.pdf")
        emulator.state.faults.append(Fault(vendor=vendor_of(vendor), status=429, retry_after="0", times=2))
        emulator.state.advance(5)
        assert hook.get_job_status(job).state == "succeeded"
    assert all(f.used_up() for f in emulator.state.faults)


async def test_503_still_failing_after_all_attempts(emulator, tmp_path):
    async with DocimprintHook() as hook:
        job = hook.job(await hook.asubmit_source("https://example.com/a.pdf"))
        emulator.state.faults.append(Fault(vendor="docimprint", status=503, path="/v1/jobs/"))
        emulator.state.requests.clear()
        with pytest.raises(VendorTransientError) as err:
            await hook.aget_job_status(job)
    assert err.value.status_code == 503 and "3 attempts" in str(err.value)
    assert len(emulator.state.requests) == 3


@pytest.fixture
def unreachable(monkeypatch) -> DocimprintHook:
    """A hook whose base URL is a loopback port nothing listens on: every connection is refused."""
    extra = {"retry_base_delay": 0.01, "max_attempts": 2}
    conn = {"conn_type": "docimprint", "host": "http://127.0.0.1:9", "password": "x", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_DOWN", json.dumps(conn))
    return DocimprintHook("down")


def test_network_error_is_retried_then_raised(unreachable):
    # Connection refused is a TransportError, retried like a 503.
    with pytest.raises(VendorTransientError, match="ConnectError") as err:
        unreachable.get_job_status({"job_id": "job_1"})
    assert isinstance(err.value.__cause__, httpx.ConnectError)


def test_slow_answer_times_out_and_is_retried(emulator, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLOW",
        emulator.connection_json("docimprint", timeout=0.2, max_attempts=2, retry_base_delay=0.01),
    )
    with DocimprintHook("slow") as hook:
        job = hook.job(hook.submit_source("https://example.com/a.pdf"))
        emulator.state.faults.append(Fault(vendor="docimprint", delay=1.0, times=1))
        assert hook.get_job_status(job).state == "pending"  # first attempt timed out, second answered


def test_non_json_body_is_transient(emulator, tmp_path):
    with MindeeHook() as hook:
        job = VENDORS[2].submit(hook, tmp_path, "doc.pdf")
        emulator.state.faults.append(Fault(vendor="mindee", status=200, body="<html>proxy</html>"))
        with pytest.raises(VendorTransientError, match="not JSON"):
            hook.get_job_status(job)
        emulator.state.faults.clear()
        assert hook.get_job_status(job).state == "pending"


def test_unknown_job_is_not_found(emulator):
    with DocimprintHook() as hook, pytest.raises(VendorNotFoundError) as err:
        hook.get_job_status({"job_id": "job_missing"})
    assert err.value.job_id == "job_missing" and "'docimprint_default'" in str(err.value)


def test_finovox_case_500_is_a_failed_folder_not_a_retry(emulator, tmp_path):
    with FinovoxHook() as hook:
        job = hook.job(hook.submit_case([str(copy_sample(tmp_path, "fail.pdf"))], "rental"), "case")
        emulator.state.advance(5)
        emulator.state.requests.clear()
        status = hook.get_job_status(job)
    assert status.state == "failed" and "failed" in status.message
    assert len(emulator.state.requests) == 1


def test_finovox_token_stays_out_of_descriptions(emulator, tmp_path, sample_pdf):
    with FinovoxHook() as hook:
        token = hook.submit_document(str(sample_pdf))
        assert token not in hook.describe_job(hook.job(token))


def test_finovox_case_result_and_share_link(emulator, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    copy_sample(folder, "id_card.pdf")
    copy_sample(folder, "payslip.pdf")
    (folder / "applicant.json").write_text('{"name": "Julien Moreau"}')
    (folder / ".DS_Store").write_text("hidden files are skipped")
    with FinovoxHook() as hook:
        token = hook.submit_case(str(folder), "rental", analyse_type=["decision", "share_link"])
        emulator.state.advance(5)
        status = hook.get_job_status(hook.job(token, "case"))
    assert status.result["decision"]["status"] == "approved"
    assert status.result["share_link"]["url"].startswith(emulator.url)
    upload = next(r for r in emulator.state.requests if r["path"].endswith("/case"))
    assert upload["headers"]["api-key"] == "***"


def test_mindee_redirect_is_followed_with_credentials_on_the_same_host(emulator, tmp_path):
    with MindeeHook() as hook:
        job = VENDORS[2].submit(hook, tmp_path, "doc.pdf")
        emulator.state.advance(5)
        emulator.state.requests.clear()
        status = hook.get_job_status(job)
    queue, document = emulator.state.requests
    assert "/documents/queue/" in queue["path"] and document["path"].endswith(status.result["document"]["id"])
    assert document["authorized"]


def test_credentials_never_go_to_another_host(emulator):
    hook = MindeeHook()
    hook.get_conn()
    with hook._request(Call("GET", "https://elsewhere.example/v1/doc")) as request:
        assert "authorization" not in request.headers
    with hook._request(Call("GET", f"{emulator.url}/mindee/v1/doc")) as request:
        assert request.headers["authorization"] == f"Token {SECRET}"


def test_mindee_url_and_base64_inputs(emulator, sample_pdf):
    with MindeeHook() as hook:
        assert hook.enqueue("https://example.com/invoice.pdf", "invoices", "v4")
        assert hook.enqueue(sample_pdf.read_bytes(), "invoices", "4")
        assert hook.enqueue("base64:" + base64.b64encode(sample_pdf.read_bytes()).decode(), "invoices", "v4")
    bodies = [r for r in emulator.state.requests if r["path"].endswith("predict_async")]
    assert len(bodies) == 3


def test_biros_wait_for_review(emulator, tmp_path):
    with BirosHook() as hook:
        document = hook.submit_document(str(copy_sample(tmp_path, "id.pdf")), "svc-1")
        job = hook.job("svc-1", document, include_validation_errors=True, wait_for_review=True)
        emulator.state.advance(0.6)
        status = hook.get_job_status(job)
        assert status.state == "pending" and "review" in status.progress
        emulator.state.advance(5)
        status = hook.get_job_status(job)
    assert status.state == "succeeded" and status.result["document"]["revision_status"] == "approved"
    assert emulator.state.requests[-1]["query"] == "include_validation_errors=true"


@pytest.mark.parametrize(
    ("call", "param"),
    [
        (lambda h, p: FinovoxHook().submit_document(str(p / "missing.pdf")), "file"),
        (lambda h, p: FinovoxHook().submit_document(str(copy_sample(p, "x.gif"))), "file"),
        (lambda h, p: FinovoxHook().submit_document(str(p / "empty.pdf")), "file"),
        (lambda h, p: FinovoxHook().submit_case(str(p / "nofolder"), "rental"), "documents"),
        (lambda h, p: FinovoxHook().submit_case(str(p / "emptydir"), "rental"), "documents"),
        (lambda h, p: FinovoxHook().submit_case([str(copy_sample(p, "a.pdf"))], ""), "use_case"),
        (
            lambda h, p: FinovoxHook().submit_case(
                [str(copy_sample(p, "a.pdf"))], "rental", analyse_type=["nope"]
            ),
            "analyse_type",
        ),
        (lambda h, p: MindeeHook().enqueue("http://example.com/a.pdf", "invoices", "v4"), "document"),
        (lambda h, p: MindeeHook().enqueue(str(copy_sample(p, "a.pdf")), "invoices/x", "v4"), "product"),
        (lambda h, p: MindeeHook().enqueue("base64:!!notbase64", "invoices", "v4"), "document"),
        (lambda h, p: DocimprintHook().submit_source("ftp://example.com/a.pdf"), "source"),
        (lambda h, p: DocimprintHook().submit_source([]), "source"),
        (lambda h, p: BirosHook().submit_document(str(copy_sample(p, "a.pdf")), ""), "service_id"),
    ],
)
def test_bad_input_fails_before_any_request(emulator, tmp_path, call, param):
    (tmp_path / "empty.pdf").write_bytes(b"")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(DocJobsInputError) as err:
        call(None, tmp_path)
    assert f"parameter {param!r}" in str(err.value) and "_default'" in str(err.value)
    assert emulator.state.requests == []


def test_object_storage_uri_is_streamed(emulator, sample_pdf):
    with BirosHook() as hook:
        assert hook.submit_document(f"file://{sample_pdf}", "svc-1")


def test_vendor_job_failed_error_does_not_retry():
    from airflow.providers.common.compat.sdk import AirflowFailException

    assert issubclass(VendorJobFailedError, AirflowFailException)


def test_base_url_with_prefix_and_empty_host(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PUBLIC", json.dumps({"conn_type": "finovox", "password": "k"}))
    hook = FinovoxHook("public")
    hook.get_conn()
    assert hook.base_url == "https://api-v2.finovox.com"
    monkeypatch.setenv(
        "AIRFLOW_CONN_URI_FORM",
        json.dumps(
            {"conn_type": "mindee", "host": "h.example", "port": 8443, "schema": "mindee", "password": "k"}
        ),
    )
    hook = MindeeHook("uri_form")
    hook.get_conn()
    assert hook.base_url == "https://h.example:8443/mindee"


def test_bad_connection_extras_are_named(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_CA",
        json.dumps({"conn_type": "biros", "password": "k", "extra": {"ca_bundle": "/nope.pem"}}),
    )
    with pytest.raises(DocJobsInputError, match=r"'ca_bundle'.*'ca'"):
        BirosHook("ca").get_conn()
    monkeypatch.setenv(
        "AIRFLOW_CONN_TIMEOUT",
        json.dumps({"conn_type": "biros", "password": "k", "extra": {"timeout": "soon"}}),
    )
    with pytest.raises(DocJobsInputError, match=r"'timeout'.*'timeout'"):
        BirosHook("timeout").get_conn()


def test_connection_form_fields_with_legacy_prefix_are_read(emulator, monkeypatch):
    conn = json.loads(emulator.connection_json("biros"))
    conn["extra"] = {"extra__biros__timeout": 7}
    monkeypatch.setenv("AIRFLOW_CONN_FORM", json.dumps(conn))
    hook = BirosHook("form")
    hook.get_conn()
    assert hook.timeout.read == 7


def test_a_vendor_echoing_the_secret_does_not_leak_it(emulator, tmp_path):
    emulator.state.faults.append(Fault(vendor="biros", status=401, body=f"invalid key {SECRET} for service"))
    with BirosHook() as hook, pytest.raises(VendorAuthError) as err:
        hook.submit_document(str(copy_sample(tmp_path, "a.pdf")), "svc-1")
    assert SECRET not in str(err.value) and "invalid key *** for service" in str(err.value)


AMBIGUOUS = {
    "502": Fault(vendor="docimprint", path="/v1/extract", status=502, times=1),
    "504": Fault(vendor="docimprint", path="/v1/extract", status=504, times=1),
    "read timeout": Fault(vendor="docimprint", path="/v1/extract", delay=1.0, times=1),
}


@pytest.mark.parametrize("strict", [False, True], ids=["default", "strict"])
@pytest.mark.parametrize("answer", list(AMBIGUOUS))
def test_a_submit_after_an_answer_that_may_have_created_a_job(emulator, monkeypatch, capfd, answer, strict):
    """Resent by default, with a warning; with resend_ambiguous_submits=false the task fails instead."""
    extra = FAST_RETRIES | {"timeout": 0.5, "resend_ambiguous_submits": "false" if strict else "true"}
    monkeypatch.setenv("AIRFLOW_CONN_DOCIMPRINT_DEFAULT", emulator.connection_json("docimprint", **extra))
    emulator.state.faults.append(dataclasses.replace(AMBIGUOUS[answer]))
    with DocimprintHook() as hook:
        if strict:
            with pytest.raises(VendorTransientError, match="may exist, so it is not resent"):
                hook.submit_source("https://example.com/a.pdf")
        else:
            assert hook.submit_source("https://example.com/a.pdf")
            assert hook.last_resends() == 1
    assert len(emulator.state.requests) == (1 if strict else 2)
    warned = [line for line in capfd.readouterr().out.splitlines() if "may have created a job" in line]
    assert len(warned) == (0 if strict else 1) and all("warning" in line for line in warned)


def test_a_submit_is_resent_when_the_vendor_did_not_take_it(emulator):
    emulator.state.faults.append(Fault(vendor="docimprint", path="/v1/extract", status=503, times=2))
    with DocimprintHook() as hook:
        assert hook.submit_source("https://example.com/a.pdf")
    assert len(emulator.state.requests) == 3


def test_a_submit_that_never_connected_is_resent(unreachable):
    with pytest.raises(VendorTransientError, match="2 attempts"):
        unreachable.submit_source("https://example.com/a.pdf")


def test_biros_flags_rendered_as_text_keep_their_meaning():
    job = BirosHook.job("svc", "doc", include_validation_errors="False", wait_for_review="true")
    assert job["include_validation_errors"] is False and job["wait_for_review"] is True


def test_a_redirect_without_location_is_a_vendor_error(emulator, tmp_path):
    with MindeeHook() as hook:
        job = VENDORS[2].submit(hook, tmp_path, "doc.pdf")
        emulator.state.faults.append(Fault(vendor="mindee", path="/documents/queue/", status=302))
        with pytest.raises(VendorAPIError, match="redirected without a Location"):
            hook.get_job_status(job)
