"""
What every vendor shares: the concurrency queue, bulk job creation and values derived from the input.
Each case runs once per vendor (Finovox twice: documents and cases) through its own poll endpoint.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from test_emulator import (  # noqa: F401 (fixtures, used by name)
    BIROS,
    DOCIMPRINT,
    FINOVOX,
    INVOICES,
    KEY,
    MINDEE,
    PDF,
    app_fixture,
    biros_submit,
    biros_url,
    client_fixture,
    emu_fixture,
    finovox_files,
)

from airflow_docjobs.emulator.values import is_fernet_like

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import httpx

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@dataclass(frozen=True)
class Kind:
    """One kind of job: how to make it in bulk, poll it, and read its vendor's status from the poll."""

    bulk: dict[str, Any]
    poll: Callable[[httpx.AsyncClient, str], Awaitable[httpx.Response]]
    status: Callable[[httpx.Response], Any]
    pending: tuple[Any, ...]
    done: Any


KINDS = {
    "finovox-document": Kind(
        {"vendor": "finovox"},
        lambda c, ref: c.post("/finovox/retrieve", headers=FINOVOX, json={"retrieve_token": ref}),
        lambda r: r.status_code,
        (425,),
        200,
    ),
    "finovox-case": Kind(
        {"vendor": "finovox", "kind": "case"},
        lambda c, ref: c.post("/finovox/case/retrieve", headers=FINOVOX, json={"retrieve_token": ref}),
        lambda r: r.status_code,
        (202,),
        200,
    ),
    "mindee": Kind(
        {"vendor": "mindee"},
        lambda c, ref: c.get(f"{INVOICES}/documents/queue/{ref}", headers=MINDEE),
        lambda r: "completed" if r.status_code == 302 else r.json()["job"]["status"],
        ("waiting", "processing"),
        "completed",
    ),
    "mindee_v2": Kind(
        {"vendor": "mindee_v2"},
        lambda c, ref: c.get(f"/mindee_v2/v2/jobs/{ref}", headers={"Authorization": KEY}),
        lambda r: r.json()["job"]["status"],
        ("Processing",),
        "Processed",
    ),
    "docimprint": Kind(
        {"vendor": "docimprint"},
        lambda c, ref: c.get(f"/docimprint/v1/jobs/{ref}"),
        lambda r: r.json()["status"],
        ("processing",),
        "complete",
    ),
    "biros": Kind(
        {"vendor": "biros"},
        lambda c, ref: c.get(biros_url(ref), headers=BIROS),
        lambda r: r.json()["document"]["status"],
        ("RUNNING",),
        "ACTIVE",
    ),
}


async def bulk(client, count: int, **body) -> list[str]:
    response = await client.post("/_emulator/bulk", json={"count": count} | body)
    assert response.status_code == 201, response.text
    return response.json()["references"]


async def states(client, kind: Kind, references: list[str]) -> list[str]:
    """``done`` or ``pending`` per job, as its vendor's poll answer says."""
    statuses = [kind.status(await kind.poll(client, reference)) for reference in references]
    assert all(s == kind.done or s in kind.pending for s in statuses), statuses
    return ["done" if s == kind.done else "pending" for s in statuses]


# -- concurrency ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS.values(), ids=KINDS.keys())
async def test_concurrency_queues_jobs_first_in_first_out(client, emu, kind):
    emu.settings.update({"concurrency": 2, "processing_seconds": 1.0})
    emu.freeze()
    references = await bulk(client, 5, **kind.bulk)
    done_over_time = []
    for _ in range(7):  # t = 0, 0.5, ..., 3.0
        done_over_time.append((await states(client, kind, references)).count("done"))
        emu.advance(0.5)
    assert done_over_time == [0, 0, 2, 2, 4, 4, 5]  # the jobs finish at 1, 1, 2, 2 and 3 s


async def test_queued_jobs_read_as_waiting(client, emu):
    emu.settings.update({"concurrency": 2})
    emu.freeze()
    mindee = await bulk(client, 3, vendor="mindee")
    docimprint = await bulk(client, 3, vendor="docimprint")
    emu.advance(0.5)
    kind = KINDS["mindee"]
    assert [kind.status(await kind.poll(client, ref)) for ref in mindee] == [
        "processing",
        "processing",
        "waiting",
    ]
    jobs = [(await client.get(f"/docimprint/v1/jobs/{ref}")).json() for ref in docimprint]
    assert [(j["progress_pct"], j["progress_message"]) for j in jobs] == [
        (50, "OCR page 7/12"),
        (50, "OCR page 7/12"),
        (0, "Queued"),
    ]


async def test_unlimited_by_default(client, emu):
    emu.freeze()
    references = await bulk(client, 50, vendor="docimprint")
    emu.advance(1.0)
    assert await states(client, KINDS["docimprint"], references) == ["done"] * 50


async def test_submitted_and_bulk_jobs_share_one_queue(client, emu):
    emu.settings.update({"concurrency": 1})
    emu.freeze()
    submitted = await client.post(
        "/docimprint/v1/extract", headers=DOCIMPRINT, json={"source": "https://x.test/a.pdf"}
    )
    references = [
        submitted.json()["job_id"],
        *await bulk(client, 1, vendor="docimprint", processing_seconds=0.5),
    ]
    emu.advance(1.0)
    assert await states(client, KINDS["docimprint"], references) == ["done", "pending"]
    emu.advance(0.5)  # the bulk job started at 1 s, when the slot freed, and took its own 0.5 s
    assert await states(client, KINDS["docimprint"], references) == ["done", "done"]


async def test_a_lowered_limit_waits_for_enough_slots(client, emu):
    emu.settings.update({"concurrency": 3})
    emu.freeze()
    references = await bulk(client, 3, vendor="biros")
    emu.settings.update({"concurrency": 1})
    references += await bulk(client, 1, vendor="biros")
    emu.advance(1.0)
    assert await states(client, KINDS["biros"], references) == ["done", "done", "done", "pending"]
    emu.advance(1.0)
    assert (await states(client, KINDS["biros"], references))[-1] == "done"


# -- bulk -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reference"),
    [
        ({"vendor": "docimprint"}, r"job_[0-9a-f]{16}"),
        ({"vendor": "mindee"}, UUID),
        ({"vendor": "mindee_v2", "product": "ocr"}, UUID),
        ({"vendor": "biros"}, UUID),
        ({"vendor": "finovox"}, r"gAAAAAB[\w-]+=*"),
        ({"vendor": "finovox", "kind": "case"}, r"gAAAAAB[\w-]+=*"),
    ],
    ids=["docimprint", "mindee", "mindee_v2", "biros", "finovox-document", "finovox-case"],
)
async def test_bulk_references_are_what_a_submit_returns(client, body, reference):
    references = await bulk(client, 3, **body)
    assert len(set(references)) == 3
    assert all(re.fullmatch(reference, r) for r in references)
    assert body["vendor"] != "finovox" or all(is_fernet_like(r) for r in references)


async def test_bulk_product_and_service_are_where_the_jobs_are_polled(client, emu):
    receipt = (await bulk(client, 1, vendor="mindee", product="acme/receipts/v2"))[0]
    document = (await bulk(client, 1, vendor="biros", service_id="svc-9"))[0]
    emu.advance(1.0)
    assert (await client.get(f"{INVOICES}/documents/queue/{receipt}", headers=MINDEE)).status_code == 404
    queue = await client.get(
        f"/mindee/v1/products/acme/receipts/v2/documents/queue/{receipt}", headers=MINDEE
    )
    assert queue.status_code == 302
    assert (await client.get(biros_url(document), headers=BIROS)).status_code == 404
    found = (await client.get(biros_url(document, service="svc-9"), headers=BIROS)).json()
    assert found["document"]["original_name"] == "doc.pdf"
    assert found["document"]["status"] == "ACTIVE"


@pytest.mark.parametrize("kind", KINDS.values(), ids=KINDS.keys())
async def test_bulk_processing_seconds_overrides_the_setting(client, emu, kind):
    emu.freeze()
    references = await bulk(client, 1, processing_seconds=0.25, **kind.bulk) + await bulk(
        client, 1, **kind.bulk
    )
    emu.advance(0.25)
    assert await states(client, kind, references) == ["done", "pending"]


@pytest.mark.parametrize("kind", KINDS.values(), ids=KINDS.keys())
async def test_bulk_name_selects_the_scenario(client, emu, kind):
    references = await bulk(client, 2, name="never.pdf", **kind.bulk)
    emu.advance(3600)
    assert await states(client, kind, references) == ["pending", "pending"]


async def test_bulk_jobs_read_like_submitted_ones(client, emu):
    (reference,) = await bulk(client, 1, vendor="docimprint", name="report.pdf")
    submitted = await client.post(
        "/docimprint/v1/extract", headers=DOCIMPRINT, json={"source": "https://example.com/report.pdf"}
    )
    emu.advance(1.0)
    bulk_job, submitted_job = [
        (await client.get(f"/docimprint/v1/jobs/{ref}")).json()
        for ref in (reference, submitted.json()["job_id"])
    ]
    assert bulk_job.pop("job_id") != submitted_job.pop("job_id")
    assert bulk_job == submitted_job
    assert bulk_job["status"] == "complete"


@pytest.mark.parametrize(
    "body",
    [
        ["docimprint"],
        {"vendor": "acme", "count": 1},
        {"vendor": "docimprint", "count": 0},
        {"vendor": "docimprint", "count": "3"},
        {"vendor": "docimprint", "count": 10**7},
        {"vendor": "docimprint", "count": 1, "name": ""},
        {"vendor": "docimprint", "count": 1, "kind": "case"},
        {"vendor": "docimprint", "count": 1, "processing_seconds": -1},
        {"vendor": "finovox", "count": 1, "kind": "folder"},
        {"vendor": "mindee", "count": 1, "product": "invoices"},
        {"vendor": "biros", "count": 1, "service_id": "unknown"},
        {"vendor": "biros", "count": 1, "service_id": 7},
    ],
    ids=[
        "not-object",
        "vendor",
        "zero",
        "count-text",
        "too-many",
        "empty-name",
        "other-vendor-field",
        "negative-seconds",
        "finovox-kind",
        "mindee-product",
        "biros-unknown-service",
        "biros-service-type",
    ],
)
async def test_bulk_validation(client, emu, body):
    response = await client.post("/_emulator/bulk", json=body)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("invalid bulk request")
    assert emu.jobs == {}


async def test_bulk_makes_ten_thousand_jobs_fast(client, emu):
    # CPU time, not wall time: xdist's other workers share the cores (1.4 s of wall time seen under load).
    started = time.process_time()
    references = await bulk(client, 10_000, vendor="mindee")
    assert time.process_time() - started < 1.0
    assert len(set(references)) == 10_000
    assert emu.job_count == 10_000


# -- values derived from the input ------------------------------------------------------------------------


async def finovox_values(client, emu, name: str, content: bytes) -> dict:
    token = (
        await client.post("/finovox/analyse", headers=FINOVOX, **finovox_files(name, content=content))
    ).json()
    emu.advance(1.0)
    result = (await client.post("/finovox/retrieve", headers=FINOVOX, json=token)).json()
    return {k: v for k, v in result.items() if k != "name"}


async def mindee_values(client, emu, name: str, content: bytes) -> dict:
    submitted = await client.post(
        f"{INVOICES}/predict_async", headers=MINDEE, files={"document": (name, content)}
    )
    emu.advance(1.0)
    queue = await client.get(f"{INVOICES}/documents/queue/{submitted.json()['job']['id']}", headers=MINDEE)
    document = (await client.get(queue.headers["location"], headers=MINDEE)).json()["document"]
    return document["inference"]["prediction"]


async def docimprint_values(client, emu, name: str, content: bytes) -> dict:
    # docimprint reads URLs: the input is the URL, here one per file version.
    source = f"https://x.test/{hashlib.sha256(content).hexdigest()[:12]}/{name}"
    job_id = (
        await client.post("/docimprint/v1/extract", headers=DOCIMPRINT, json={"source": source})
    ).json()["job_id"]
    emu.advance(1.0)
    job = (await client.get(f"/docimprint/v1/jobs/{job_id}")).json()
    return {"bundle_id": job["bundle_id"], "manifest_sha256": job["manifest_sha256"]}


async def biros_values(client, emu, name: str, content: bytes) -> dict:
    document_id = (await biros_submit(client, name, content=content)).json()["resource"]
    emu.advance(1.0)
    return (await client.get(biros_url(document_id), headers=BIROS)).json()["document_pages"][0]["entities"]


VALUES = {
    "finovox": finovox_values,
    "mindee": mindee_values,
    "docimprint": docimprint_values,
    "biros": biros_values,
}


@pytest.mark.parametrize("read", VALUES.values(), ids=VALUES.keys())
async def test_values_derive_from_the_input(client, emu, read):
    inputs = [("id.pdf", PDF), ("id.pdf", PDF + b"\n% another version"), ("card.pdf", PDF), ("id.pdf", PDF)]
    values = [await read(client, emu, name, content) for name, content in inputs]
    assert values[0] == values[3]  # the same input reads the same
    assert values[0] != values[1]
    assert values[0] != values[2]
    assert values[1] != values[2]
