"""The vendor emulator: each vendor's life cycle and scenarios, auth, faults, journal, and the mindee SDK."""

from __future__ import annotations

import asyncio
import base64
import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from mindee import PathInput, product
from mindee.error.mindee_http_error import MindeeHTTPClientError, MindeeHTTPServerError
from mindee.v1 import Client

from airflow_docjobs.emulator import EmulatorSettings, Fault, create_app
from airflow_docjobs.emulator.testing import EmulatorServer

KEY = "emulator"
PDF = (Path(__file__).parent / "fixtures" / "invoice.pdf").read_bytes()
FINOVOX = {"api-key": KEY}
MINDEE = {"Authorization": f"Token {KEY}"}
DOCIMPRINT = {"X-Payment": KEY}
BIROS = {"x-api-key": KEY}
INVOICES = "/mindee/v1/products/mindee/invoices/v4"


@pytest.fixture
def app():
    return create_app(
        EmulatorSettings(api_key=KEY, processing_seconds=1.0, result_ttl_seconds=60.0, review_seconds=1.0)
    )


@pytest.fixture
def emu(app):
    return app.state.emulator


@pytest.fixture
async def client(app):
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://emulator"
    ) as client:
        yield client


def finovox_files(name: str = "payslip.pdf", asynchronous: bool = True, **payload) -> dict:
    payload = {"analyse_type": ["risk"], "asynchronous": asynchronous} | payload
    return {"files": {"file": (name, PDF)}, "data": {"payload": json.dumps(payload)}}


def case_files(*names: str, **payload) -> dict:
    payload = {"analyse_type": ["decision"], "use_case": "rental", "asynchronous": True} | payload
    files = [("documents", (name, PDF)) for name in names]
    return {"files": files, "data": {"payload": json.dumps(payload)}}


# -- Finovox document analysis ------------------------------------------------------------------------


async def test_finovox_document_pending_then_result(client, emu):
    submit = await client.post("/finovox/analyse", headers=FINOVOX, **finovox_files())
    assert submit.status_code == 200
    token = submit.json()["retrieve_token"]
    assert token.startswith("gAAAAAB") and len(token) > 100

    pending = await client.post("/finovox/retrieve", headers=FINOVOX, json={"retrieve_token": token})
    assert pending.status_code == 425
    assert pending.json() == {"detail": "Result not ready, retry later"}

    emu.advance(1.0)
    done = await client.post("/finovox/retrieve", headers=FINOVOX, json={"retrieve_token": token})
    assert done.status_code == 200
    result = done.json()
    assert result["name"] == "payslip.pdf"
    assert result["global_risk"] == "low" and result["document_quality"] == "acceptable"
    for key in (
        "software_risk",
        "metadata_risk",
        "datastructure_risk",
        "vision_risk",
        "coherence_risk",
        "software",
    ):
        assert key in result


async def test_finovox_document_real_clock(app, client):
    app.state.emulator.settings.processing_seconds = 0.2
    token = (await client.post("/finovox/analyse", headers=FINOVOX, **finovox_files())).json()[
        "retrieve_token"
    ]
    assert (
        await client.post("/finovox/retrieve", headers=FINOVOX, json={"retrieve_token": token})
    ).status_code == 425
    await asyncio.sleep(0.25)
    assert (
        await client.post("/finovox/retrieve", headers=FINOVOX, json={"retrieve_token": token})
    ).status_code == 200


async def test_finovox_document_sync_mode_answers_at_once(client):
    response = await client.post(
        "/finovox/analyse", headers=FINOVOX, **finovox_files("scan.PNG", asynchronous=False)
    )
    assert response.status_code == 200
    assert response.json()["name"] == "scan.PNG"


@pytest.mark.parametrize("name", ["fraud_payslip.pdf", "FAIL.jpg"])
async def test_finovox_document_fraud_and_fail_are_high_risk(client, emu, name):
    token = (await client.post("/finovox/analyse", headers=FINOVOX, **finovox_files(name))).json()[
        "retrieve_token"
    ]
    emu.advance(1.0)
    result = (await client.post("/finovox/retrieve", headers=FINOVOX, json={"retrieve_token": token})).json()
    assert result["global_risk"] == "high" and result["software"] == "photoshop"


async def test_finovox_document_never_stays_not_ready(client, emu):
    token = (await client.post("/finovox/analyse", headers=FINOVOX, **finovox_files("never.pdf"))).json()
    emu.advance(10_000)
    assert (await client.post("/finovox/retrieve", headers=FINOVOX, json=token)).status_code == 425


async def test_finovox_document_result_expires(client, emu):
    token = (await client.post("/finovox/analyse", headers=FINOVOX, **finovox_files())).json()
    emu.advance(1.0 + 59.0)  # processed after 1 s, deleted 60 s later
    assert (await client.post("/finovox/retrieve", headers=FINOVOX, json=token)).status_code == 200
    emu.advance(1.0)
    expired = await client.post("/finovox/retrieve", headers=FINOVOX, json=token)
    assert expired.status_code == 404 and "detail" in expired.json()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"files": {"file": ("notes.txt", b"x")}, "data": {"payload": "{}"}}, "Unsupported file format"),
        ({"files": {"other": ("a.pdf", PDF)}, "data": {"payload": "{}"}}, "'file' is required"),
        ({"files": {"file": ("a.pdf", PDF)}, "data": {"payload": "{not json"}}, "not valid JSON"),
    ],
)
async def test_finovox_document_validation(client, kwargs, message):
    response = await client.post("/finovox/analyse", headers=FINOVOX, **kwargs)
    assert response.status_code == 422
    assert message in response.json()["detail"]


async def test_finovox_retrieve_unknown_token(client):
    response = await client.post("/finovox/retrieve", headers=FINOVOX, json={"retrieve_token": "gAAAAABnope"})
    assert response.status_code == 404


# -- Finovox case analysis ----------------------------------------------------------------------------


async def test_finovox_case_processing_then_decision(client, emu):
    kinds = ["decision", "explanation", "share_link"]
    submit = await client.post(
        "/finovox/case",
        headers=FINOVOX,
        **case_files("id.pdf", "payslip.png", "form.json", analyse_type=kinds),
    )
    assert submit.status_code == 202
    token = submit.json()["retrieve_token"]
    running = await client.post("/finovox/case/retrieve", headers=FINOVOX, json={"retrieve_token": token})
    assert running.status_code == 202
    assert running.json()["status"] == "processing"
    assert re.fullmatch(r"\d\d_\d\d_\d\d_\d\d_\d\d_[0-9a-f]{32}", running.json()["run_id"])

    emu.advance(1.0)
    done = await client.post("/finovox/case/retrieve", headers=FINOVOX, json={"retrieve_token": token})
    assert done.status_code == 200
    result = done.json()
    assert set(result) == set(kinds)
    assert result["decision"] == {
        "status": "approved",
        "status_fraud": "low",
        "status_validation": "compliant",
    }
    assert isinstance(result["explanation"], str)
    assert result["share_link"]["url"].startswith("http://emulator/finovox/share/")
    page = await client.get(result["share_link"]["url"])
    assert page.status_code == 200 and "id.pdf" in page.text


@pytest.mark.parametrize(
    ("name", "fraud", "validation"),
    [("bank_FRAUD.pdf", "high", "compliant"), ("noncompliant.pdf", "low", "non_compliant")],
)
async def test_finovox_case_rejected(client, emu, name, fraud, validation):
    token = (await client.post("/finovox/case", headers=FINOVOX, **case_files("id.pdf", name))).json()
    emu.advance(1.0)
    decision = (await client.post("/finovox/case/retrieve", headers=FINOVOX, json=token)).json()["decision"]
    assert decision == {"status": "rejected", "status_fraud": fraud, "status_validation": validation}


async def test_finovox_case_failed_folder_is_500(client, emu):
    token = (await client.post("/finovox/case", headers=FINOVOX, **case_files("id.pdf", "fail.pdf"))).json()
    assert (await client.post("/finovox/case/retrieve", headers=FINOVOX, json=token)).status_code == 202
    emu.advance(1.0)
    failed = await client.post("/finovox/case/retrieve", headers=FINOVOX, json=token)
    assert failed.status_code == 500
    assert failed.json() == {"detail": "The async folder failed and could not produce a final result."}


async def test_finovox_case_token_errors(client, emu):
    bad_format = await client.post("/finovox/case/retrieve", headers=FINOVOX, json={"retrieve_token": "abc"})
    assert bad_format.status_code == 401
    well_formed = base64.urlsafe_b64encode(b"\x80" + bytes(80)).decode()
    assert (
        await client.post("/finovox/case/retrieve", headers=FINOVOX, json={"retrieve_token": well_formed})
    ).status_code == 404

    token = (await client.post("/finovox/case", headers=FINOVOX, **case_files("id.pdf"))).json()
    emu.settings.api_key = "another-key"  # the token now belongs to someone else
    other = await client.post("/finovox/case/retrieve", headers={"api-key": "another-key"}, json=token)
    assert other.status_code == 403

    emu.settings.api_key = KEY
    emu.advance(1.0 + 60.0)
    assert (await client.post("/finovox/case/retrieve", headers=FINOVOX, json=token)).status_code == 404


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"files": {"other": ("a.pdf", PDF)}, "data": {"payload": '{"use_case": "rental"}'}}, "documents"),
        (case_files("a.pdf", use_case=""), "use_case"),
        (case_files("a.pdf", analyse_type=["risk"]), "analyse_type"),
        (case_files("a.exe"), "Unsupported file format"),
    ],
)
async def test_finovox_case_validation(client, kwargs, message):
    response = await client.post("/finovox/case", headers=FINOVOX, **kwargs)
    assert response.status_code == 422
    assert message in response.json()["detail"]


async def test_finovox_auth(client):
    for headers in ({}, {"api-key": "wrong"}, {"Authorization": f"Token {KEY}"}):
        response = await client.post("/finovox/analyse", headers=headers, **finovox_files())
        assert response.status_code == 401
        assert response.json() == {"detail": "Invalid API key"}


# -- Mindee --------------------------------------------------------------------------------------------


async def test_mindee_waiting_processing_then_redirect_to_document(client, emu):
    submit = await client.post(
        f"{INVOICES}/predict_async", headers=MINDEE, files={"document": ("inv.pdf", PDF)}
    )
    assert submit.status_code == 202
    body = submit.json()
    assert body["api_request"] == {
        "error": {},
        "resources": ["job"],
        "status": "success",
        "status_code": 202,
        "url": f"http://emulator{INVOICES}/predict_async",
    }
    job = body["job"]
    assert job["status"] == "waiting" and job["available_at"] is None and job["error"] == {}
    assert set(job) == {"available_at", "id", "issued_at", "status", "error"}

    queue_url = f"{INVOICES}/documents/queue/{job['id']}"
    assert (await client.get(queue_url, headers=MINDEE)).json()["job"]["status"] == "waiting"
    emu.advance(0.5)
    processing = await client.get(queue_url, headers=MINDEE)
    assert processing.status_code == 200 and processing.json()["job"]["status"] == "processing"

    emu.advance(0.5)
    redirect = await client.get(queue_url, headers=MINDEE)
    assert redirect.status_code == 302
    location = redirect.headers["location"]
    assert re.fullmatch(rf"http://emulator{INVOICES}/documents/[0-9a-f-]{{36}}", location)

    document = await client.get(location, headers=MINDEE)
    assert document.status_code == 200
    payload = document.json()
    assert payload["job"]["status"] == "completed" and payload["job"]["available_at"]
    doc = payload["document"]
    assert doc["name"] == "inv.pdf" and doc["n_pages"] == 1 and location.endswith(doc["id"])
    inference = doc["inference"]
    assert {
        "prediction",
        "pages",
        "started_at",
        "finished_at",
        "processing_time",
        "is_rotation_applied",
        "extras",
        "product",
    } <= set(inference)
    assert inference["prediction"]["invoice_number"]["value"] == "INV-2024-0042"
    assert inference["prediction"]["total_amount"]["value"] == 1676.79
    assert len(inference["pages"]) == 1 and inference["product"]["name"] == "mindee/invoices"

    # The redirect target needs the token too.
    assert (await client.get(location)).status_code == 401


async def test_mindee_base64_and_url_inputs(client, emu):
    b64 = await client.post(
        f"{INVOICES}/predict_async", headers=MINDEE, json={"document": base64.b64encode(PDF).decode()}
    )
    url = await client.post(
        f"{INVOICES}/predict_async", headers=MINDEE, json={"document": "https://x.test/a.pdf"}
    )
    assert b64.status_code == url.status_code == 202
    emu.advance(1.0)
    other = await client.post(
        "/mindee/v1/products/acme/receipts/v2/predict_async",
        headers=MINDEE,
        files={"document": ("r.jpg", b"jpg")},
    )
    emu.advance(1.0)
    redirect = await client.get(
        f"/mindee/v1/products/acme/receipts/v2/documents/queue/{other.json()['job']['id']}", headers=MINDEE
    )
    generic = (await client.get(redirect.headers["location"], headers=MINDEE)).json()["document"]["inference"]
    assert generic["product"]["name"] == "acme/receipts" and "total_amount" in generic["prediction"]


@pytest.mark.parametrize(
    "kwargs",
    [{"json": {"document": "http://x.test/a.pdf"}}, {"json": {}}, {"json": {"document": "!!not base64!!"}}],
)
async def test_mindee_bad_input_is_400_with_envelope(client, kwargs):
    response = await client.post(f"{INVOICES}/predict_async", headers=MINDEE, **kwargs)
    assert response.status_code == 400
    request = response.json()["api_request"]
    assert request["status"] == "failure" and request["status_code"] == 400
    assert request["error"]["code"] == "BadRequest"


async def test_mindee_failed_and_never_jobs(client, emu):
    failed = await client.post(
        f"{INVOICES}/predict_async", headers=MINDEE, files={"document": ("Fail.pdf", PDF)}
    )
    never = await client.post(
        f"{INVOICES}/predict_async", headers=MINDEE, files={"document": ("never.pdf", PDF)}
    )
    emu.advance(3600)
    failed_job = (
        await client.get(f"{INVOICES}/documents/queue/{failed.json()['job']['id']}", headers=MINDEE)
    ).json()["job"]
    assert failed_job["status"] == "failed"
    assert failed_job["error"]["code"] == "ServerError" and failed_job["error"]["message"]
    never_poll = await client.get(f"{INVOICES}/documents/queue/{never.json()['job']['id']}", headers=MINDEE)
    assert never_poll.status_code == 200 and never_poll.json()["job"]["status"] == "processing"


async def test_mindee_unknown_job_is_404(client):
    response = await client.get(f"{INVOICES}/documents/queue/nope", headers=MINDEE)
    assert response.status_code == 404
    assert response.json()["api_request"]["error"]["code"] == "NotFound"


@pytest.mark.parametrize(
    ("headers", "details"),
    [
        ({}, "No token provided"),
        ({"Authorization": "Token wrong"}, "Invalid token provided"),
        ({"api-key": KEY}, "No token provided"),
    ],
)
async def test_mindee_auth(client, headers, details):
    response = await client.post(
        f"{INVOICES}/predict_async", headers=headers, files={"document": ("a.pdf", PDF)}
    )
    assert response.status_code == 401
    request = response.json()["api_request"]
    assert request["error"] == {
        "code": "Unauthorized",
        "message": "Authorization required",
        "details": details,
    }
    assert request["status"] == "failure" and request["status_code"] == 401


# -- docimprint ---------------------------------------------------------------------------------------


async def test_docimprint_extract_progress_then_complete(client, emu):
    submit = await client.post(
        "/docimprint/v1/extract", headers=DOCIMPRINT, json={"source": "https://x.test/r.pdf"}
    )
    assert submit.status_code == 202
    job_id = submit.json()["job_id"]
    assert submit.json() == {"job_id": job_id, "status": "processing"} and job_id.startswith("job_")

    emu.advance(0.2)
    running = (await client.get(f"/docimprint/v1/jobs/{job_id}")).json()  # polling is free: no X-Payment
    assert running["status"] == "processing" and running["progress_pct"] == 20
    assert running["progress_message"] == "OCR page 3/12"
    assert "bundle_id" not in running

    emu.advance(1.0)
    done = (await client.get(f"/docimprint/v1/jobs/{job_id}", headers=DOCIMPRINT)).json()
    assert done["status"] == "complete" and done["progress_pct"] == 100
    assert done["bundle_id"].startswith("ev_") and re.fullmatch(r"[0-9a-f]{64}", done["manifest_sha256"])


async def test_docimprint_sync_extract(client):
    inline = await client.post(
        "/docimprint/v1/extract?sync=true", headers=DOCIMPRINT, json={"source": "https://x.test/p.html"}
    )
    assert inline.status_code == 200
    body = inline.json()
    assert (
        body["status"] == "complete"
        and body["bundle_id"].startswith("ev_")
        and len(body["manifest_sha256"]) == 64
    )
    failed = await client.post(
        "/docimprint/v1/extract?sync=true", headers=DOCIMPRINT, json={"source": "https://x.test/fail"}
    )
    assert failed.status_code == 422 and failed.json()["error"]["code"] == "extract_failed"


async def test_docimprint_batch_with_a_failing_item(client, emu):
    items = [{"source": "https://x.test/a.pdf"}, {"source": "https://x.test/FAIL.pdf"}]
    submit = await client.post(
        "/docimprint/v1/jobs", headers=DOCIMPRINT, json={"items": items, "mode": "extract"}
    )
    assert submit.status_code == 202
    job_id = submit.json()["job_id"]
    running = (await client.get(f"/docimprint/v1/jobs/{job_id}")).json()
    assert [i["status"] for i in running["items"]] == ["processing", "processing"]
    assert running["progress_message"].endswith("/24")
    emu.advance(1.0)
    done = (await client.get(f"/docimprint/v1/jobs/{job_id}")).json()
    assert done["status"] == "failed" and done["error"]["code"] == "extract_failed"
    assert [i["status"] for i in done["items"]] == ["complete", "failed"]
    assert done["items"][0]["bundle_id"].startswith("ev_") and "bundle_id" not in done


async def test_docimprint_never_and_unknown(client, emu):
    job_id = (
        await client.post(
            "/docimprint/v1/extract", headers=DOCIMPRINT, json={"source": "https://x.test/never"}
        )
    ).json()["job_id"]
    emu.advance(3600)
    assert (await client.get(f"/docimprint/v1/jobs/{job_id}")).json()["status"] == "processing"
    missing = await client.get("/docimprint/v1/jobs/job_nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/docimprint/v1/jobs", {"items": []}),
        ("/docimprint/v1/jobs", {"items": [{"source": "ftp://x.test/a.pdf"}]}),
        ("/docimprint/v1/extract", {"source": "file:///etc/passwd"}),
        ("/docimprint/v1/extract", {"source": "https://x.test/a", "webhook": "nope"}),
    ],
)
async def test_docimprint_validation(client, path, body):
    response = await client.post(path, headers=DOCIMPRINT, json=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


async def test_docimprint_payment_required(client):
    for headers in ({}, {"X-Payment": "wrong"}):
        response = await client.post(
            "/docimprint/v1/extract", headers=headers, json={"source": "https://x.test/a"}
        )
        assert response.status_code == 402
        assert response.json()["error"]["code"] == "payment_required"


# -- myBiros ------------------------------------------------------------------------------------------


def biros_url(document_id: str, service: str = "svc-1", query: str = "") -> str:
    return f"/biros/inference/service/{service}/predicted-documents/{document_id}{query}"


async def biros_submit(client, name: str, service: str = "svc-1") -> httpx.Response:
    return await client.post(
        f"/biros/inference/service/{service}/async-predict", headers=BIROS, files={"file": (name, PDF)}
    )


async def test_biros_running_then_active_and_reviewed(client, emu):
    submit = await biros_submit(client, "health_card.pdf")
    assert submit.status_code == 200
    assert set(submit.json()) == {"job", "resource"}
    document_id = submit.json()["resource"]

    running = await client.get(biros_url(document_id), headers=BIROS)
    assert running.status_code == 200
    assert running.json()["document"]["status"] == "RUNNING" and running.json()["document"]["message"]
    assert running.json()["service"] == "svc-1" and running.json()["current_date"].endswith("+00:00")

    statuses = []
    for step in (1.0, 0.6, 0.5):  # done after 1 s, then review_seconds=1: pending, to_review, decided
        emu.advance(step)
        body = (await client.get(biros_url(document_id), headers=BIROS)).json()
        statuses.append(body["document"]["revision_status"])
    assert statuses == ["pending", "to_review", "approved"]
    assert body["document"] == {
        "id": document_id,
        "status": "ACTIVE",
        "revision_status": "approved",
        "original_name": "health_card.pdf",
        "content_type": "application/pdf",
        "page_count": 1,
    }
    assert {"service", "service_name", "service_fields", "current_date", "document", "document_pages"} <= set(
        body
    )
    page = body["document_pages"][0]
    assert {
        "page_index",
        "page_layout",
        "ocr",
        "entities_index",
        "entities",
        "aggregated_entities",
        "policy_violations",
        "errors",
    } <= set(page)
    assert page["entities"]["fiscal_code_1"]["text"] == "VRDGPP13R10B293P"
    assert page["entities"]["surname_1"][0]["text"] == "VERDI"


async def test_biros_reject_with_validation_errors_on_request(client, emu):
    document_id = (await biros_submit(client, "REJECT_me.pdf")).json()["resource"]
    emu.advance(10)
    plain = (await client.get(biros_url(document_id), headers=BIROS)).json()
    assert plain["document"]["revision_status"] == "not_approved"
    assert plain["document_pages"][0]["errors"] == []
    detailed = (
        await client.get(biros_url(document_id, query="?include_validation_errors=true"), headers=BIROS)
    ).json()
    assert detailed["document_pages"][0]["errors"][0]["entity"] == "fiscal_code_1"


async def test_biros_error_and_never(client, emu):
    failed = (await biros_submit(client, "fail.pdf")).json()["resource"]
    never = (await biros_submit(client, "never.pdf")).json()["resource"]
    emu.advance(3600)
    error = (await client.get(biros_url(failed), headers=BIROS)).json()["document"]
    assert error["status"] == "ERROR" and error["message"]
    assert (await client.get(biros_url(never), headers=BIROS)).json()["document"]["status"] == "RUNNING"


async def test_biros_not_found_and_validation(client):
    assert (await biros_submit(client, "a.pdf", service="unknown")).status_code == 404
    document_id = (await biros_submit(client, "a.pdf")).json()["resource"]
    assert (await client.get(biros_url(document_id, service="svc-2"), headers=BIROS)).status_code == 404
    missing = await client.get(biros_url("no-such-doc"), headers=BIROS)
    assert missing.status_code == 404 and "detail" in missing.json()
    no_file = await client.post(
        "/biros/inference/service/svc-1/async-predict", headers=BIROS, files={"x": ("a", b"")}
    )
    assert no_file.status_code == 422


async def test_biros_auth(client):
    for headers in ({}, {"x-api-key": "wrong"}):
        response = await client.get(biros_url("x"), headers=headers)
        assert response.status_code == 401 and "detail" in response.json()


# -- faults, journal and control API ------------------------------------------------------------------


async def test_fault_429_with_retry_after_then_normal(client, emu):
    emu.faults.append(
        Fault(vendor="biros", path="/predicted-documents/", status=429, retry_after="1", times=1)
    )
    first = await client.get(biros_url("x"), headers=BIROS)
    assert first.status_code == 429 and first.headers["retry-after"] == "1"
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
    assert response.headers["content-type"].startswith("text/html") and "Bad Gateway" in response.text
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
    emu.faults.append(Fault(vendor="docimprint", delay=0.3, times=1))
    started = time.monotonic()
    response = await client.get("/docimprint/v1/jobs/job_x")
    assert time.monotonic() - started >= 0.3
    assert response.status_code == 404  # the real handler answered after the delay
    started = time.monotonic()
    await client.get("/docimprint/v1/jobs/job_x")
    assert time.monotonic() - started < 0.3


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
)
async def test_invalid_fault_is_422(client, fault):
    assert (await client.post("/_emulator/faults", json=fault)).status_code == 422


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
    assert journal[0]["path"] == "/finovox/retrieve" and journal[0]["headers"]["api-key"] == "***"
    assert journal[1]["headers"]["authorization"] == "***"
    assert "x-payment" not in journal[2]["headers"] and journal[2]["query"] == "verbose=1"
    assert (
        journal[3]["headers"]["x-api-key"] == "***"
        and journal[3]["query"] == "include_validation_errors=true"
    )
    assert not [v for e in journal for k, v in e["headers"].items() if KEY in v and k != "host"]
    assert (await client.delete("/_emulator/requests")).status_code == 204
    assert (await client.get("/_emulator/requests")).json() == []


async def test_config_and_reset(client, emu):
    changed = await client.post("/_emulator/config", json={"processing_seconds": 0, "api_key": "k2"})
    assert changed.status_code == 200 and changed.json()["processing_seconds"] == 0.0
    assert (await client.post("/_emulator/config", json={"processing_seconds": "soon"})).status_code == 422
    assert (await client.post("/_emulator/config", json={"nope": 1})).status_code == 422
    submit = await client.post(
        "/docimprint/v1/extract", headers={"X-Payment": "k2"}, json={"source": "https://x.test/a"}
    )
    job_id = submit.json()["job_id"]
    assert (await client.get(f"/docimprint/v1/jobs/{job_id}")).json()["status"] == "complete"
    emu.faults.append(Fault(status=500))
    assert (await client.post("/_emulator/reset")).status_code == 204
    assert emu.faults == [] and emu.requests == [] and emu.jobs == {}
    assert (await client.get(f"/docimprint/v1/jobs/{job_id}")).status_code == 404


def test_emulator_server_in_process():
    with EmulatorServer(EmulatorSettings(processing_seconds=0)) as server:
        conn = json.loads(server.connection_json("biros", timeout=5))
        assert conn == {
            "conn_type": "biros",
            "host": f"{server.url}/biros",
            "password": KEY,
            "extra": {"timeout": 5},
        }
        response = httpx.get(f"{server.url}/_emulator/health")
        assert response.status_code == 200
        httpx.get(f"{server.url}/biros/inference/service/s/predicted-documents/d")
        assert server.state.requests[-1]["authorized"] is False  # the test sees the server's state


# -- the official mindee SDK against a real server ----------------------------------------------------


def test_mindee_sdk_against_the_server_process(tmp_path, monkeypatch):
    command = [sys.executable, "-m", "airflow_docjobs.emulator", "--port", "0", "--processing-seconds", "0.3"]
    root = Path(__file__).resolve().parents[1]
    process = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    try:
        line = lines.get(timeout=20)
        match = re.fullmatch(r"emulator listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        monkeypatch.setenv("MINDEE_BASE_URL", f"{match[1]}/mindee")
        monkeypatch.delenv("MINDEE_API_KEY", raising=False)
        client = Client(api_key=KEY)

        queued = client.enqueue(
            product.InvoiceV4, PathInput(str(Path(__file__).parent / "fixtures" / "invoice.pdf"))
        )
        assert queued.job.status == "waiting"
        deadline = time.monotonic() + 10
        while (response := client.parse_queued(product.InvoiceV4, queued.job.id)).job.status != "completed":
            assert response.job.status in ("waiting", "processing") and time.monotonic() < deadline
            time.sleep(0.1)
        prediction = response.document.inference.prediction
        assert prediction.invoice_number.value == "INV-2024-0042"
        assert prediction.supplier_name.value == "ACME CORPORATION"
        assert prediction.total_amount.value == 1676.79 and prediction.total_net.value == 1549.0
        assert prediction.date.date_object.isoformat() == "2024-03-14"
        assert [item.total_amount for item in prediction.line_items] == [1500.0, 49.0]
        assert prediction.taxes[0].rate == 8.25 and prediction.locale.currency == "USD"
        assert response.document.n_pages == 1 and "INV-2024-0042" in str(response.document)

        failing = tmp_path / "invoice_fail.pdf"
        failing.write_bytes(PDF)
        failed = client.enqueue(product.InvoiceV4, PathInput(str(failing)))
        time.sleep(0.4)
        with pytest.raises(MindeeHTTPServerError):
            client.parse_queued(product.InvoiceV4, failed.job.id)

        with pytest.raises(MindeeHTTPClientError) as denied:
            Client(api_key="wrong").enqueue(product.InvoiceV4, PathInput(str(failing)))
        assert denied.value.status_code == 401 and denied.value.api_code == "Unauthorized"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=10) == 0, process.stderr.read()
        finally:
            process.kill()
            process.stdout.close()
            process.stderr.close()
