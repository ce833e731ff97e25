"""The docimprint and myBiros emulators: life cycles, scenarios, validation and auth."""

from __future__ import annotations

import re

import pytest
from test_emulator import (  # noqa: F401 (fixtures, used by name)
    BIROS,
    DOCIMPRINT,
    KEY,
    PDF,
    app_fixture,
    biros_submit,
    biros_url,
    client_fixture,
    emu_fixture,
)

# -- docimprint ---------------------------------------------------------------------------------------


async def extract(client, source: str) -> str:
    response = await client.post("/docimprint/v1/extract", headers=DOCIMPRINT, json={"source": source})
    return response.json()["job_id"]


async def test_docimprint_extract_progress_then_complete(client, emu):
    emu.freeze()  # progress is read at exactly 0.2 s: a running clock adds the loaded machine's wall time
    submit = await client.post(
        "/docimprint/v1/extract", headers=DOCIMPRINT, json={"source": "https://x.test/r.pdf"}
    )
    assert submit.status_code == 202
    job_id = submit.json()["job_id"]
    assert submit.json() == {"job_id": job_id, "status": "processing"}
    assert job_id.startswith("job_")

    emu.advance(0.2)
    running = (await client.get(f"/docimprint/v1/jobs/{job_id}")).json()  # polling is free: no X-Payment
    assert running["status"] == "processing"
    assert running["progress_pct"] == 20
    assert running["progress_message"] == "OCR page 3/12"
    assert "bundle_id" not in running

    emu.advance(1.0)
    done = (await client.get(f"/docimprint/v1/jobs/{job_id}", headers=DOCIMPRINT)).json()
    assert done["status"] == "complete"
    assert done["progress_pct"] == 100
    assert done["bundle_id"].startswith("ev_")
    assert re.fullmatch(r"[0-9a-f]{64}", done["manifest_sha256"])


async def test_docimprint_bundle_derives_from_the_sources(client, emu):
    sources = ["https://x.test/a.pdf", "https://x.test/b.pdf", "https://x.test/a.pdf"]
    job_ids = [await extract(client, source) for source in sources]
    batch = await client.post(
        "/docimprint/v1/jobs", headers=DOCIMPRINT, json={"items": [{"source": s} for s in sources[:2]]}
    )
    emu.advance(1.0)
    jobs = [(await client.get(f"/docimprint/v1/jobs/{job_id}")).json() for job_id in job_ids]
    bundles = [(job["bundle_id"], job["manifest_sha256"]) for job in jobs]
    assert bundles[0] == bundles[2]
    assert bundles[0][0] != bundles[1][0]
    assert bundles[0][1] != bundles[1][1]
    items = (await client.get(f"/docimprint/v1/jobs/{batch.json()['job_id']}")).json()["items"]
    # A batch item's bundle is the one an extract of the same source makes.
    assert [(i["bundle_id"], i["manifest_sha256"]) for i in items] == bundles[:2]


async def test_docimprint_sync_extract(client):
    inline = await client.post(
        "/docimprint/v1/extract?sync=true", headers=DOCIMPRINT, json={"source": "https://x.test/p.html"}
    )
    assert inline.status_code == 200
    body = inline.json()
    assert body["status"] == "complete"
    assert body["bundle_id"].startswith("ev_")
    assert len(body["manifest_sha256"]) == 64
    assert (await client.get(f"/docimprint/v1/jobs/{body['job_id']}")).json()["status"] == "complete"
    failed = await client.post(
        "/docimprint/v1/extract?sync=true", headers=DOCIMPRINT, json={"source": "https://x.test/fail"}
    )
    assert failed.status_code == 422
    assert failed.json()["error"]["code"] == "extract_failed"


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
    assert done["status"] == "failed"
    # As docimprint's own client reads a failed job: the error a string, the code beside it.
    assert done["code"] == "extract_failed"
    assert done["error"] == "Could not extract https://x.test/FAIL.pdf: the document could not be parsed"
    assert [i["status"] for i in done["items"]] == ["complete", "failed"]
    assert done["items"][0]["bundle_id"].startswith("ev_")
    assert "bundle_id" not in done


async def test_docimprint_file_upload(client, emu):
    """A multipart ``file`` with form fields, as docimprint's own client uploads it; scenarios by file name."""
    submit = await client.post(
        "/docimprint/v1/extract?async=true",
        headers=DOCIMPRINT,
        data={"mode": "extract"},
        files={"file": ("lease.pdf", PDF, "application/pdf")},
    )
    assert submit.status_code == 202
    job_id = submit.json()["job_id"]
    emu.advance(1.0)
    done = (await client.get(f"/docimprint/v1/jobs/{job_id}")).json()
    assert done["status"] == "complete"
    again = await client.post(
        "/docimprint/v1/extract?sync=true", headers=DOCIMPRINT, files={"file": ("lease.pdf", PDF)}
    )
    assert again.json()["bundle_id"] == done["bundle_id"]  # the same document makes the same bundle
    assert again.json()["source"] == "lease.pdf"
    other = await client.post(
        "/docimprint/v1/extract?sync=true", headers=DOCIMPRINT, files={"file": ("lease.pdf", PDF + b" ")}
    )
    assert other.json()["bundle_id"] != done["bundle_id"]
    failing = await client.post(
        "/docimprint/v1/extract", headers=DOCIMPRINT, files={"file": ("fail.pdf", PDF)}
    )
    emu.advance(1.0)
    failed = (await client.get(f"/docimprint/v1/jobs/{failing.json()['job_id']}")).json()
    assert (failed["status"], failed["code"]) == ("failed", "extract_failed")
    assert failed["error"] == "Could not extract fail.pdf: the document could not be parsed"


@pytest.mark.parametrize(
    ("files", "data"),
    [
        ({"document": ("a.pdf", PDF)}, {}),
        ({"file": ("a.pdf", b"")}, {}),
        ({"file": ("a.pdf", PDF)}, {"webhook": "nope"}),
    ],
    ids=["no-file-field", "empty-file", "bad-webhook"],
)
async def test_docimprint_upload_validation(client, files, data):
    response = await client.post("/docimprint/v1/extract", headers=DOCIMPRINT, files=files, data=data)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


async def test_docimprint_cancelled_job(client, emu):
    job_id = await extract(client, "https://x.test/cancel-me.pdf")
    emu.advance(1.0)
    job = (await client.get(f"/docimprint/v1/jobs/{job_id}")).json()
    assert job["status"] == "cancelled"
    assert job["code"] == "job_cancelled"
    assert isinstance(job["error"], str)
    assert "bundle_id" not in job


async def test_docimprint_api_key_as_bearer(client):
    """docimprint's own client sends an API key as ``Authorization: Bearer``; the X-Payment token still works."""
    body = {"source": "https://x.test/a"}
    bearer = await client.post(
        "/docimprint/v1/extract", headers={"Authorization": f"Bearer {KEY}"}, json=body
    )
    assert bearer.status_code == 202
    wrong = await client.post("/docimprint/v1/extract", headers={"Authorization": "Bearer nope"}, json=body)
    assert wrong.status_code == 402
    raw = await client.post("/docimprint/v1/extract", headers={"Authorization": KEY}, json=body)
    assert raw.status_code == 402


async def test_docimprint_never_and_unknown(client, emu):
    job_id = await extract(client, "https://x.test/never")
    emu.advance(3600)
    assert (await client.get(f"/docimprint/v1/jobs/{job_id}")).json()["status"] == "processing"
    missing = await client.get("/docimprint/v1/jobs/job_nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/docimprint/v1/jobs", {"items": []}),
        ("/docimprint/v1/jobs", {"items": [{"source": "ftp://x.test/a.pdf"}]}),
        ("/docimprint/v1/extract", {"source": "file:///etc/passwd"}),
        ("/docimprint/v1/extract", {"source": "https://x.test/a", "webhook": "nope"}),
        ("/docimprint/v1/qa?async=true", {"source": "https://x.test/a", "webhook": "nope"}),
        ("/docimprint/v1/jobs", {"items": [{"source": "https://x.test/a"}], "webhook": "ftp://x.test/h"}),
    ],
    ids=["no-items", "ftp-item", "file-source", "bad-webhook", "focused-bad-webhook", "batch-bad-webhook"],
)
async def test_docimprint_validation(client, path, body):
    response = await client.post(path, headers=DOCIMPRINT, json=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("headers", [{}, {"X-Payment": "wrong"}], ids=["none", "wrong"])
async def test_docimprint_payment_required(client, headers):
    response = await client.post(
        "/docimprint/v1/extract", headers=headers, json={"source": "https://x.test/a"}
    )
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "payment_required"


# -- myBiros ------------------------------------------------------------------------------------------

FISCAL_CODE = re.compile(r"[A-Z]{6}\d{2}[ABCDEHLMPRST]\d{2}[A-Z]\d{3}[A-Z]")


async def test_biros_running_then_active(client, emu):
    submit = await biros_submit(client, "health_card.pdf")
    assert submit.status_code == 200
    assert set(submit.json()) == {"job", "resource"}
    document_id = submit.json()["resource"]

    running = await client.get(biros_url(document_id), headers=BIROS)
    assert running.status_code == 200
    assert running.json()["document"]["status"] == "RUNNING"
    assert running.json()["document"]["message"]
    assert running.json()["service"] == "svc-1"
    assert running.json()["current_date"].endswith("+00:00")

    emu.advance(2.1)
    body = (await client.get(biros_url(document_id), headers=BIROS)).json()
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
    entities = page["entities"]
    surname, name = entities["surname_1"][0]["text"], entities["name_1"][0]["text"]
    fiscal_code = entities["fiscal_code_1"]["text"]  # single-valued: an object, not a list
    assert FISCAL_CODE.fullmatch(fiscal_code)
    assert surname.isalpha()
    assert name.isalpha()
    assert [word["text"] for word in page["ocr"]] == [surname, name, fiscal_code]


async def test_biros_entities_derive_from_the_file(client, emu):
    document_ids = [(await biros_submit(client, f"id_{i}.pdf")).json()["resource"] for i in range(8)]
    emu.advance(1.0)
    pages = [
        (await client.get(biros_url(d), headers=BIROS)).json()["document_pages"][0] for d in document_ids
    ]
    people = [
        (
            p["entities"]["surname_1"][0]["text"],
            p["entities"]["name_1"][0]["text"],
            p["entities"]["fiscal_code_1"]["text"],
        )
        for p in pages
    ]
    surnames, names, fiscal_codes = zip(*people, strict=True)
    assert len(set(surnames)) > 1
    assert len(set(names)) > 1
    assert len(set(fiscal_codes)) == 8
    # The code starts with the surname's consonants, as an Italian fiscal code does.
    assert all(code[:2] == "".join(c for c in surname if c not in "AEIOU")[:2] for surname, _, code in people)


@pytest.mark.parametrize(
    ("seconds", "revision_status"),
    [(1.0, "pending"), (1.6, "to_review"), (2.1, "approved")],
    ids=["pending", "to-review", "decided"],
)
async def test_biros_review_after_processing(client, emu, seconds, revision_status):
    # Done after 1 s; then review_seconds=1: picked up half way, decided at the end.
    document_id = (await biros_submit(client, "health_card.pdf")).json()["resource"]
    emu.advance(seconds)
    body = (await client.get(biros_url(document_id), headers=BIROS)).json()
    assert body["document"]["revision_status"] == revision_status


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
    assert error["status"] == "ERROR"
    assert error["message"]
    assert (await client.get(biros_url(never), headers=BIROS)).json()["document"]["status"] == "RUNNING"


async def test_biros_not_found_and_validation(client):
    assert (await biros_submit(client, "a.pdf", service="unknown")).status_code == 404
    document_id = (await biros_submit(client, "a.pdf")).json()["resource"]
    assert (await client.get(biros_url(document_id, service="svc-2"), headers=BIROS)).status_code == 404
    missing = await client.get(biros_url("no-such-doc"), headers=BIROS)
    assert missing.status_code == 404
    assert "detail" in missing.json()
    no_file = await client.post(
        "/biros/inference/service/svc-1/async-predict", headers=BIROS, files={"x": ("a", b"")}
    )
    assert no_file.status_code == 422


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"}], ids=["none", "wrong"])
async def test_biros_auth(client, headers):
    response = await client.get(biros_url("x"), headers=headers)
    assert response.status_code == 401
    assert "detail" in response.json()


@pytest.mark.parametrize("endpoint", ["summarize", "qa"])
async def test_docimprint_focused_endpoints_are_synchronous_unless_async(client, emu, endpoint):
    body = {"source": "https://x.test/lease.pdf", "question": "Who is the tenant?"}
    inline = await client.post(f"/docimprint/v1/{endpoint}", headers=DOCIMPRINT, json=body)
    assert inline.status_code == 200
    assert inline.json()["source"] == body["source"]

    queued = await client.post(f"/docimprint/v1/{endpoint}?async=true", headers=DOCIMPRINT, json=body)
    assert queued.status_code == 202
    job_id = queued.json()["job_id"]
    assert (await client.get(f"/docimprint/v1/jobs/{job_id}")).json()["status"] == "processing"
    emu.advance(1.0)
    done = (await client.get(f"/docimprint/v1/jobs/{job_id}")).json()
    # The full result lands in the job response, the same as the synchronous answer; no bundle.
    assert done["status"] == "complete"
    assert done["endpoint"] == endpoint
    assert done["result"] == inline.json()["result"]
    assert "bundle_id" not in done


async def test_docimprint_qa_answers_depend_on_the_source_and_the_question(client, emu):
    async def answer(source: str, question: str) -> dict:
        body = {"source": source, "question": question}
        return (await client.post("/docimprint/v1/qa", headers=DOCIMPRINT, json=body)).json()["result"]

    first = await answer("https://x.test/a.pdf", "Total?")
    assert first["question"] == "Total?"
    assert 0 < first["confidence"] < 1
    assert first == await answer("https://x.test/a.pdf", "Total?")
    assert first != await answer("https://x.test/b.pdf", "Total?")
    assert first != await answer("https://x.test/a.pdf", "Date?")


async def test_docimprint_focused_endpoints_validate_and_fail_like_extract(client, emu):
    bad = await client.post("/docimprint/v1/summarize?async=true", headers=DOCIMPRINT, json={"source": "x"})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_request"
    unpaid = await client.post("/docimprint/v1/qa", json={"source": "https://x.test/a.pdf"})
    assert unpaid.status_code == 402
    failing = {"source": "https://x.test/fail.pdf"}
    queued = await client.post("/docimprint/v1/summarize?async=true", headers=DOCIMPRINT, json=failing)
    emu.advance(1.0)
    done = (await client.get(f"/docimprint/v1/jobs/{queued.json()['job_id']}")).json()
    assert done["status"] == "failed"
    assert done["code"] == "extract_failed"
    assert "result" not in done
