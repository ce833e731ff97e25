"""The Mindee emulator: queue, redirect and document, inputs, derived invoice values, and the official SDK."""

from __future__ import annotations

import base64
import re
import time
from datetime import date
from pathlib import Path

import pytest
from mindee import PathInput, product
from mindee.error.mindee_http_error import MindeeHTTPClientError, MindeeHTTPServerError
from mindee.v1 import Client
from test_emulator import (  # noqa: F401 (fixtures, used by name)
    INVOICES,
    KEY,
    MINDEE,
    PDF,
    STARTUP_SECONDS,
    app_fixture,
    client_fixture,
    emu_fixture,
    emulator_process,
)

from airflow_docjobs.emulator.mindee_predictions import TAX_RATES, invoice_values
from airflow_docjobs.emulator.values import Seeded, seed_of


async def submit(client, name: str = "inv.pdf", content: bytes = PDF, path: str = INVOICES) -> dict:
    response = await client.post(f"{path}/predict_async", headers=MINDEE, files={"document": (name, content)})
    assert response.status_code == 202
    return response.json()["job"]


async def document(client, job_id: str, path: str = INVOICES) -> dict:
    """The finished document of a job, through the queue's redirect."""
    redirect = await client.get(f"{path}/documents/queue/{job_id}", headers=MINDEE)
    assert redirect.status_code == 302
    return (await client.get(redirect.headers["location"], headers=MINDEE)).json()["document"]


async def test_waiting_processing_then_redirect_to_document(client, emu):
    submitted = await client.post(
        f"{INVOICES}/predict_async", headers=MINDEE, files={"document": ("inv.pdf", PDF)}
    )
    assert submitted.status_code == 202
    body = submitted.json()
    assert body["api_request"] == {
        "error": {},
        "resources": ["job"],
        "status": "success",
        "status_code": 202,
        "url": f"http://emulator{INVOICES}/predict_async",
    }
    job = body["job"]
    assert job["status"] == "waiting"
    assert job["available_at"] is None
    assert job["error"] == {}
    assert set(job) == {"available_at", "id", "issued_at", "status", "error"}

    queue_url = f"{INVOICES}/documents/queue/{job['id']}"
    assert (await client.get(queue_url, headers=MINDEE)).json()["job"]["status"] == "waiting"
    emu.advance(0.5)
    processing = await client.get(queue_url, headers=MINDEE)
    assert processing.status_code == 200
    assert processing.json()["job"]["status"] == "processing"

    emu.advance(0.5)
    redirect = await client.get(queue_url, headers=MINDEE)
    assert redirect.status_code == 302
    location = redirect.headers["location"]
    assert re.fullmatch(rf"http://emulator{INVOICES}/documents/[0-9a-f-]{{36}}", location)

    response = await client.get(location, headers=MINDEE)
    assert response.status_code == 200
    payload = response.json()
    assert payload["job"]["status"] == "completed"
    assert payload["job"]["available_at"]
    doc = payload["document"]
    assert doc["name"] == "inv.pdf"
    assert doc["n_pages"] == 1
    assert location.endswith(doc["id"])
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
    expected = invoice_values(Seeded(seed_of("inv.pdf", PDF)))
    assert inference["prediction"]["invoice_number"]["value"] == expected["invoice_number"]
    assert inference["prediction"]["total_amount"]["value"] == expected["total_amount"]
    assert len(inference["pages"]) == 1
    assert inference["product"]["name"] == "mindee/invoices"

    # The redirect target needs the token too.
    assert (await client.get(location)).status_code == 401


@pytest.mark.parametrize(
    "name", ["invoice.pdf", "march.pdf", "INV_0042.pdf", "scan.jpg"], ids=["invoice", "march", "upper", "jpg"]
)
async def test_invoice_values_are_plausible(client, emu, name):
    job = await submit(client, name)
    emu.advance(1.0)
    inference = (await document(client, job["id"]))["inference"]
    p = {
        k: v["value"] if isinstance(v, dict) and "value" in v else v
        for k, v in inference["prediction"].items()
    }
    net, tax, total = p["total_net"], p["total_tax"], p["total_amount"]
    assert all(round(amount, 2) == amount > 0 for amount in (net, tax, total))
    assert total == round(net + tax, 2)
    assert round(sum(item["total_amount"] for item in p["line_items"]), 2) == net
    assert all(
        item["total_amount"] == round(item["quantity"] * item["unit_price"], 2) for item in p["line_items"]
    )
    rate = p["taxes"][0]["rate"]
    assert rate in TAX_RATES
    assert tax == round(net * rate / 100, 2)
    assert p["taxes"][0]["base"] == net
    assert date.fromisoformat(p["due_date"]) > date.fromisoformat(p["date"])
    assert re.fullmatch(r"INV-\d{4}-\d{4}", p["invoice_number"])
    assert p["supplier_name"] == inference["prediction"]["supplier_name"]["raw_value"].upper()
    # Page 0 reads the document-level values.
    assert inference["pages"][0]["prediction"]["total_amount"]["value"] == total


async def test_the_same_document_as_upload_or_base64_reads_the_same(client, emu):
    upload = await submit(client, "inv.pdf")
    encoded = base64.b64encode(PDF).decode()
    b64 = await client.post(
        f"{INVOICES}/predict_async", headers=MINDEE, json={"document": encoded, "filename": "inv.pdf"}
    )
    emu.advance(1.0)
    first = (await document(client, upload["id"]))["inference"]["prediction"]
    second = (await document(client, b64.json()["job"]["id"]))["inference"]["prediction"]
    assert first == second


async def test_base64_url_and_custom_product_inputs(client, emu):
    b64 = await client.post(
        f"{INVOICES}/predict_async", headers=MINDEE, json={"document": base64.b64encode(PDF).decode()}
    )
    urls = [
        await client.post(f"{INVOICES}/predict_async", headers=MINDEE, json={"document": url})
        for url in ("https://x.test/a.pdf", "https://x.test/b.pdf", "https://x.test/a.pdf")
    ]
    assert b64.status_code == 202
    assert {u.status_code for u in urls} == {202}
    receipts = "/mindee/v1/products/acme/receipts/v2"
    others = [await submit(client, name, b"jpg", path=receipts) for name in ("r1.jpg", "r2.jpg")]
    emu.advance(1.0)
    totals = [
        (await document(client, u.json()["job"]["id"]))["inference"]["prediction"]["total_amount"]["value"]
        for u in urls
    ]
    assert totals[0] == totals[2] != totals[1]  # a URL input is seeded by its URL
    generic = [(await document(client, other["id"], path=receipts))["inference"] for other in others]
    assert {g["product"]["name"] for g in generic} == {"acme/receipts"}
    first, second = (g["prediction"] for g in generic)
    assert first["total_amount"]["value"] != second["total_amount"]["value"]
    assert first["date"]["value"] != second["date"]["value"]
    assert (
        generic[0]["pages"][0]["prediction"]["total_amount"]["value"]
        == (generic[0]["prediction"]["total_amount"]["value"])
    )


@pytest.mark.parametrize(
    "kwargs",
    [{"json": {"document": "http://x.test/a.pdf"}}, {"json": {}}, {"json": {"document": "!!not base64!!"}}],
    ids=["http-url", "no-document", "bad-base64"],
)
async def test_bad_input_is_400_with_envelope(client, kwargs):
    response = await client.post(f"{INVOICES}/predict_async", headers=MINDEE, **kwargs)
    assert response.status_code == 400
    request = response.json()["api_request"]
    assert request["status"] == "failure"
    assert request["status_code"] == 400
    assert request["error"]["code"] == "BadRequest"


async def test_failed_and_never_jobs(client, emu):
    failed = await submit(client, "Fail.pdf")
    never = await submit(client, "never.pdf")
    emu.advance(3600)
    failed_job = (await client.get(f"{INVOICES}/documents/queue/{failed['id']}", headers=MINDEE)).json()[
        "job"
    ]
    assert failed_job["status"] == "failed"
    assert failed_job["error"]["code"] == "ServerError"
    assert failed_job["error"]["message"]
    never_poll = await client.get(f"{INVOICES}/documents/queue/{never['id']}", headers=MINDEE)
    assert never_poll.status_code == 200
    assert never_poll.json()["job"]["status"] == "processing"


async def test_unknown_job_is_404(client):
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
    ids=["none", "wrong", "finovox-header"],
)
async def test_auth(client, headers, details):
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
    assert request["status"] == "failure"
    assert request["status_code"] == 401


# -- the official mindee SDK against a real server ----------------------------------------------------


def test_mindee_sdk_against_the_server_process(tmp_path, monkeypatch):
    with emulator_process("--processing-seconds", "0.3") as (_, lines):
        line = lines.get(timeout=STARTUP_SECONDS)
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
            assert response.job.status in ("waiting", "processing")
            assert time.monotonic() < deadline
            time.sleep(0.1)
        prediction = response.document.inference.prediction
        expected = invoice_values(Seeded(seed_of("invoice.pdf", PDF)))
        assert prediction.invoice_number.value == expected["invoice_number"]
        assert prediction.supplier_name.value == expected["supplier"].upper()
        assert prediction.total_amount.value == expected["total_amount"]
        assert prediction.total_net.value == expected["total_net"]
        assert prediction.date.date_object.isoformat() == expected["date"]
        assert [item.total_amount for item in prediction.line_items] == [
            entry[4] for entry in expected["lines"]
        ]
        assert prediction.taxes[0].rate == expected["tax_rate"]
        assert prediction.locale.currency == "USD"
        assert response.document.n_pages == 1
        assert expected["invoice_number"] in str(response.document)

        failing = tmp_path / "invoice_fail.pdf"
        failing.write_bytes(PDF)
        failed = client.enqueue(product.InvoiceV4, PathInput(str(failing)))
        time.sleep(0.4)
        with pytest.raises(MindeeHTTPServerError):
            client.parse_queued(product.InvoiceV4, failed.job.id)

        with pytest.raises(MindeeHTTPClientError) as denied:
            Client(api_key="wrong").enqueue(product.InvoiceV4, PathInput(str(failing)))
        assert denied.value.status_code == 401
        assert denied.value.api_code == "Unauthorized"
