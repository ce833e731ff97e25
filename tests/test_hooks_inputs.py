"""What the hooks take before sending anything: parameters, inputs, and the connection's settings."""

from __future__ import annotations

import base64

import pytest
from conftest import SECRET, copy_sample, journal

import airflow_docjobs
from airflow_docjobs.exceptions import DocJobsInputError
from airflow_docjobs.hooks.base import Call
from airflow_docjobs.hooks.biros import BirosHook
from airflow_docjobs.hooks.docimprint import DocimprintHook
from airflow_docjobs.hooks.mindee import MindeeHook


def test_mindee_url_and_base64_inputs_are_sent_as_json(emulator, sample_pdf):
    content = sample_pdf.read_bytes()
    with MindeeHook() as hook:
        assert hook.submit("https://example.com/invoice.pdf", product="invoices", version="v4")
        assert hook.submit(content, product="invoices", version="4")
        assert hook.submit("base64:" + base64.b64encode(content).decode(), product="invoices", version="v4")
    uploads = journal(emulator, "/predict_async", "POST")
    assert len(uploads) == 3
    assert emulator.state.stats()["jobs"] == 3
    assert all(r["headers"]["content-type"] == "application/json" for r in uploads)
    assert all(r["path"].startswith("/mindee/v1/products/mindee/invoices/v4/") for r in uploads)


def test_biros_flags_rendered_as_text_keep_their_meaning():
    job = BirosHook.job_reference("doc", "svc", include_validation_errors="False", wait_for_review="true")
    assert job["include_validation_errors"] is False
    assert job["wait_for_review"] is True


def test_biros_wait_for_review(frozen, tmp_path):
    with BirosHook() as hook:
        document = hook.submit(str(copy_sample(tmp_path, "id.pdf")), service_id="svc-1")
        job = hook.job_reference(document, "svc-1", include_validation_errors=True, wait_for_review=True)
        frozen.state.advance(0.6)  # processed (0.5 s); the review takes 0.5 s more
        status = hook.get_job_status(job)
        assert status.state == "pending"
        assert "review" in status.progress
        frozen.state.advance(5)
        status = hook.get_job_status(job)
    assert status.state == "succeeded"
    assert status.result["document"]["revision_status"] == "approved"
    assert frozen.state.requests[-1]["query"] == "include_validation_errors=true"


def test_credentials_never_go_to_another_host(emulator):
    hook = MindeeHook()
    hook.get_conn()
    with hook._request(Call("GET", "https://elsewhere.example/v1/doc")) as request:
        assert "authorization" not in request.headers
    with hook._request(Call("GET", f"{emulator.url}/mindee/v1/doc")) as request:
        assert request.headers["authorization"] == f"Token {SECRET}"


def test_requests_name_the_package_and_its_version(emulator):
    with DocimprintHook() as hook:
        hook.submit("https://example.com/a.pdf")
    (submit,) = emulator.state.requests
    assert submit["headers"]["user-agent"] == f"airflow-docjobs/{airflow_docjobs.__version__}"


def test_a_connection_without_a_secret_is_refused_before_any_request(emulator, vendor_conn):
    empty = vendor_conn("mindee", conn_id="empty", fields={"password": None})
    with pytest.raises(DocJobsInputError, match=r"API key.*'empty'"):
        MindeeHook(empty).get_conn()
    assert emulator.state.requests == []


@pytest.mark.parametrize(
    ("fields", "base_url"),
    [
        ({"host": None}, "https://api.mindee.net"),
        ({"host": "h.example", "port": 8443, "schema": "mindee"}, "https://h.example:8443/mindee"),
        ({"host": "http://127.0.0.1:8080/mindee/"}, "http://127.0.0.1:8080/mindee"),
    ],
    ids=["empty host", "host port schema", "URL with a prefix"],
)
def test_the_host_holds_the_base_url(vendor_conn, fields, base_url):
    assert MindeeHook(vendor_conn("mindee", conn_id="where", fields=fields)).settings.base_url == base_url


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"ca_bundle": "/nope.pem"}, "'ca_bundle'"),
        ({"timeout": "soon"}, "'timeout'"),
        ({"max_attempts": 0}, "'max_attempts'"),
    ],
    ids=["ca_bundle", "timeout", "max_attempts"],
)
def test_bad_connection_extras_are_named(vendor_conn, extra, named):
    with pytest.raises(DocJobsInputError, match=rf"{named}.*'odd'"):
        BirosHook(vendor_conn("biros", conn_id="odd", **extra)).get_conn()


def test_connection_form_fields_with_legacy_prefix_are_read(vendor_conn):
    assert BirosHook(vendor_conn("biros", conn_id="form", extra__biros__timeout=7)).settings.timeout.read == 7


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("false", False),
        ("0", False),
        ("no", False),
        ("off", False),
        ("true", True),
        ("yes", True),
        (None, True),
    ],
    ids=lambda value: str(value),
)
def test_resend_ambiguous_submits_reads_text_as_the_form_gives_it(vendor_conn, text, expected):
    extra = {} if text is None else {"resend_ambiguous_submits": text}  # None: not set, the default
    assert DocimprintHook(vendor_conn("docimprint", **extra)).settings.resend_ambiguous is expected
