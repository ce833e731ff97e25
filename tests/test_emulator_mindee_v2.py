"""The Mindee v2 emulator: enqueue, job, inference, errors as problem documents, and the official SDK."""

from __future__ import annotations

import re
import time

import pytest
from conftest import FIXTURES, PATIENCE, SECRET, copy_sample
from mindee import (
    ClassificationParameters,
    ClassificationResponse,
    ExtractionParameters,
    ExtractionResponse,
    PathInput,
    PollingOptions,
    URLInputSource,
)
from mindee.error.mindee_error import MindeeError
from mindee.v2 import Client
from mindee.v2.error.mindee_http_error_v2 import MindeeHTTPErrorV2
from test_emulator import PDF, app_fixture, client_fixture, emu_fixture  # noqa: F401 (fixtures)

from airflow_docjobs.emulator.mindee_predictions import invoice_values
from airflow_docjobs.emulator.values import Seeded, seed_of

KEY = {"Authorization": "emulator"}  # test_emulator's key, raw: v2 takes no "Token " prefix
MODEL = "8c7a3bd0-0c6e-4b8f-9f3a-0d7b7e1c2a11"
V2 = "/mindee_v2/v2"
# The SDK's minimum delays, so a test waits about two seconds per job.
QUICK = PollingOptions(initial_delay_sec=1, delay_sec=1, max_retries=30)


async def enqueue(client, name: str = "inv.pdf", path: str = "/products/extraction/enqueue", **data) -> dict:
    response = await client.post(
        V2 + path, headers=KEY, data={"model_id": MODEL} | data, files={"file": (name, PDF)}
    )
    assert response.status_code == 202, response.text
    return response.json()["job"]


async def test_processing_then_processed_with_the_inference_at_result_url(client, emu):
    job = await enqueue(client, alias="ledger-17", confidence="true", polygon="true")
    assert set(job) == {
        "id",
        "model_id",
        "filename",
        "alias",
        "created_at",
        "completed_at",
        "status",
        "polling_url",
        "result_url",
        "webhooks",
        "error",
    }
    assert (job["status"], job["model_id"], job["alias"], job["filename"]) == (
        "Processing",
        MODEL,
        "ledger-17",
        "inv.pdf",
    )
    assert job["polling_url"] == f"http://emulator{V2}/jobs/{job['id']}"
    assert job["result_url"] is None
    assert job["error"] is None

    emu.advance(1.0)
    processed = (await client.get(f"{V2}/jobs/{job['id']}", headers=KEY)).json()["job"]
    assert processed["status"] == "Processed"
    assert processed["completed_at"]
    assert re.fullmatch(
        rf"http://emulator{V2}/products/extraction/results/[0-9a-f-]{{36}}", processed["result_url"]
    )

    inference = (await client.get(processed["result_url"], headers=KEY)).json()["inference"]
    assert inference["job"] == {"id": job["id"]}
    assert inference["model"] == {"id": MODEL}
    assert inference["file"] == {
        "name": "inv.pdf",
        "alias": "ledger-17",
        "page_count": 1,
        "mime_type": "application/pdf",
    }
    assert inference["active_options"]["confidence"] is True
    fields = inference["result"]["fields"]
    expected = invoice_values(Seeded(seed_of("inv.pdf", PDF)))
    assert fields["total_amount"]["value"] == expected["total_amount"]
    assert fields["total_amount"]["confidence"] in ("Certain", "High", "Medium", "Low")
    assert fields["total_amount"]["locations"][0]["page"] == 0
    assert fields["locale"]["fields"]["currency"]["value"] == "USD"
    assert len(fields["line_items"]["items"]) == len(expected["lines"])


async def test_options_off_leave_fields_bare_and_the_older_inferences_path_still_answers(client, emu):
    job = await enqueue(client, path="/inferences/enqueue")
    emu.advance(1.0)
    result_url = (await client.get(f"{V2}/jobs/{job['id']}", headers=KEY)).json()["job"]["result_url"]
    assert "/v2/inferences/" in result_url
    fields = (await client.get(result_url, headers=KEY)).json()["inference"]["result"]["fields"]
    assert fields["date"] == {"value": invoice_values(Seeded(seed_of("inv.pdf", PDF)))["date"]}


async def test_a_failed_job_carries_a_problem_document(client, emu):
    job = await enqueue(client, name="inv_fail.pdf")
    emu.advance(1.0)
    failed = (await client.get(f"{V2}/jobs/{job['id']}", headers=KEY)).json()["job"]
    assert failed["status"] == "Failed"
    assert failed["result_url"] is None
    assert set(failed["error"]) == {"status", "title", "detail", "code", "errors"}


@pytest.mark.parametrize(
    ("data", "files", "pointer"),
    [
        ({}, {"file": ("a.pdf", PDF)}, "#/model_id"),
        ({"model_id": MODEL}, None, "#/file"),
        ({"model_id": MODEL, "url": "http://example.com/a.pdf"}, None, "#/url"),
    ],
)
async def test_bad_enqueues_are_422_problems(client, data, files, pointer):
    response = await client.post(f"{V2}/products/extraction/enqueue", headers=KEY, data=data, files=files)
    assert response.status_code == 422
    problem = response.json()
    assert (problem["status"], problem["code"]) == (422, "422-001")
    assert problem["errors"][0]["pointer"] == pointer


@pytest.mark.parametrize(
    ("headers", "code"), [({}, "401-008"), ({"Authorization": "Token emulator"}, "401-001")]
)
async def test_auth_is_the_raw_key(client, headers, code):
    response = await client.get(f"{V2}/jobs/unknown", headers=headers)
    assert response.status_code == 401
    assert response.json()["code"] == code


async def test_unknown_job_and_product(client):
    assert (await client.get(f"{V2}/jobs/unknown", headers=KEY)).json()["status"] == 404
    response = await client.post(f"{V2}/products/nope/enqueue", headers=KEY, data={"model_id": MODEL})
    assert response.status_code == 404


# -- the official mindee SDK's v2 client against the emulator's server ---------------------------------


@pytest.fixture
def sdk(emulator, monkeypatch) -> Client:
    monkeypatch.setenv("MINDEE_V2_BASE_URL", emulator.vendor_url("mindee_v2"))
    monkeypatch.delenv("MINDEE_V2_API_KEY", raising=False)
    return Client(api_key=SECRET)


def test_the_official_sdk_completes_an_extraction(sdk, tmp_path):
    params = ExtractionParameters(
        model_id=MODEL,
        confidence=True,
        raw_text=True,
        alias="a-1",
        webhook_ids=["w-1"],
        polling_options=QUICK,
    )
    response = sdk.enqueue_and_get_result(
        ExtractionResponse, PathInput(str(FIXTURES / "invoice.pdf")), params
    )
    expected = invoice_values(Seeded(seed_of("invoice.pdf", PDF)))
    fields = response.inference.result.fields
    assert fields["invoice_number"].value == expected["invoice_number"]
    assert fields["total_amount"].value == expected["total_amount"]
    assert fields["supplier_address"].fields["city"].value == "San Francisco"
    assert [item.fields["total_price"].value for item in fields["line_items"].items] == [
        line[4] for line in expected["lines"]
    ]
    assert str(fields["total_amount"].confidence) in ("Certain", "High", "Medium", "Low")
    assert expected["invoice_number"] in response.inference.result.raw_text.pages[0].content
    assert response.inference.model.id == MODEL
    assert response.inference.file.alias == "a-1"
    assert expected["invoice_number"] in str(response)

    # Another product, by URL.
    classified = sdk.enqueue_and_get_result(
        ClassificationResponse,
        URLInputSource("https://example.com/scan.pdf"),
        ClassificationParameters(model_id=MODEL, polling_options=QUICK),
    )
    assert classified.inference.result.classification.document_type in (
        "invoice",
        "receipt",
        "bank_statement",
    )


def test_the_official_sdk_reads_a_failed_job_and_a_refused_key(sdk, tmp_path, monkeypatch):
    failing = copy_sample(tmp_path, "invoice_fail.pdf")
    params = ExtractionParameters(model_id=MODEL, polling_options=QUICK)
    with pytest.raises(MindeeError, match=r"Parsing failed for job .*: The document could not be processed"):
        sdk.enqueue_and_get_result(ExtractionResponse, PathInput(str(failing)), params)
    job_id = sdk.enqueue(PathInput(str(failing)), params).job.id
    deadline = time.monotonic() + PATIENCE
    while (job := sdk.get_job(job_id).job).status == "Processing" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job.status == "Failed"
    assert job.result_url is None
    assert (job.error.status, job.error.code) == (500, "500-001")
    with pytest.raises(MindeeHTTPErrorV2) as refused:
        Client(api_key="wrong").get_job(job_id)
    assert (refused.value.status, refused.value.code) == (401, "401-001")
