"""The Finovox emulator: document analysis and case analysis, their scenarios, tokens and auth."""

from __future__ import annotations

import asyncio
import base64
import re

import pytest
from test_emulator import (  # noqa: F401 (fixtures, used by name)
    FINOVOX,
    KEY,
    PDF,
    app_fixture,
    case_files,
    client_fixture,
    emu_fixture,
    finovox_files,
)

RISKS = {"software_risk", "metadata_risk", "datastructure_risk", "vision_risk", "coherence_risk"}


async def analyse(client, name: str = "payslip.pdf", content: bytes = PDF) -> dict:
    response = await client.post("/finovox/analyse", headers=FINOVOX, **finovox_files(name, content=content))
    return response.json()


async def retrieve(client, token: dict):
    return await client.post("/finovox/retrieve", headers=FINOVOX, json=token)


# -- document analysis --------------------------------------------------------------------------------


async def test_document_pending_then_result(client, emu):
    submit = await client.post("/finovox/analyse", headers=FINOVOX, **finovox_files())
    assert submit.status_code == 200
    token = submit.json()["retrieve_token"]
    assert token.startswith("gAAAAAB")
    assert len(token) > 100

    pending = await client.post("/finovox/retrieve", headers=FINOVOX, json={"retrieve_token": token})
    assert pending.status_code == 425
    assert pending.json() == {"detail": "Result not ready, retry later"}

    emu.advance(1.0)
    done = await client.post("/finovox/retrieve", headers=FINOVOX, json={"retrieve_token": token})
    assert done.status_code == 200
    result = done.json()
    assert result["name"] == "payslip.pdf"
    assert result["global_risk"] == "low"
    assert result["document_quality"] == "acceptable"
    assert {*RISKS, "software"} <= set(result)
    # A clean document: the tampering signs stay low, whatever else varies.
    assert result["software_risk"] == result["vision_risk"] == "low"
    assert result["software"] != "photoshop"


async def test_document_real_clock(app, client):
    app.state.emulator.settings.processing_seconds = 0.2
    token = await analyse(client)
    assert (await retrieve(client, token)).status_code == 425
    await asyncio.sleep(0.25)
    assert (await retrieve(client, token)).status_code == 200


async def test_document_sync_mode_answers_at_once_with_the_async_values(client, emu):
    response = await client.post(
        "/finovox/analyse", headers=FINOVOX, **finovox_files("scan.PNG", asynchronous=False)
    )
    assert response.status_code == 200
    assert response.json()["name"] == "scan.PNG"
    token = await analyse(client, "scan.PNG")
    emu.advance(1.0)
    assert (await retrieve(client, token)).json() == response.json()


@pytest.mark.parametrize("name", ["fraud_payslip.pdf", "FAIL.jpg"], ids=["fraud", "fail"])
async def test_document_fraud_and_fail_are_high_risk(client, emu, name):
    token = await analyse(client, name)
    emu.advance(1.0)
    result = (await retrieve(client, token)).json()
    assert result["global_risk"] == "high"
    assert result["software"] == "photoshop"
    assert result["software_risk"] == result["vision_risk"] == "high"
    assert result["metadata_risk"] in ("medium", "high")
    assert result["coherence_risk"] in ("medium", "high")


async def test_document_never_stays_not_ready(client, emu):
    token = await analyse(client, "never.pdf")
    emu.advance(10_000)
    assert (await retrieve(client, token)).status_code == 425


async def test_document_result_expires(client, emu):
    token = await analyse(client)
    emu.advance(1.0 + 59.0)  # processed after 1 s, deleted 60 s later
    assert (await retrieve(client, token)).status_code == 200
    emu.advance(1.0)
    expired = await retrieve(client, token)
    assert expired.status_code == 404
    assert "detail" in expired.json()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"files": {"file": ("notes.txt", b"x")}, "data": {"payload": "{}"}}, "Unsupported file format"),
        ({"files": {"other": ("a.pdf", PDF)}, "data": {"payload": "{}"}}, "'file' is required"),
        ({"files": {"file": ("a.pdf", PDF)}, "data": {"payload": "{not json"}}, "not valid JSON"),
    ],
    ids=["format", "no-file", "bad-payload"],
)
async def test_document_validation(client, kwargs, message):
    response = await client.post("/finovox/analyse", headers=FINOVOX, **kwargs)
    assert response.status_code == 422
    assert message in response.json()["detail"]


async def test_retrieve_unknown_token(client):
    assert (await retrieve(client, {"retrieve_token": "gAAAAABnope"})).status_code == 404


@pytest.mark.parametrize(
    "headers", [{}, {"api-key": "wrong"}, {"Authorization": f"Token {KEY}"}], ids=["none", "wrong", "mindee"]
)
async def test_auth(client, headers):
    response = await client.post("/finovox/analyse", headers=headers, **finovox_files())
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid API key"}


# -- case analysis ------------------------------------------------------------------------------------


async def test_case_processing_then_decision(client, emu):
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
    assert page.status_code == 200
    assert "id.pdf" in page.text


@pytest.mark.parametrize(
    ("name", "fraud", "validation"),
    [("bank_FRAUD.pdf", "high", "compliant"), ("noncompliant.pdf", "low", "non_compliant")],
    ids=["fraud", "noncompliant"],
)
async def test_case_rejected(client, emu, name, fraud, validation):
    token = (await client.post("/finovox/case", headers=FINOVOX, **case_files("id.pdf", name))).json()
    emu.advance(1.0)
    decision = (await client.post("/finovox/case/retrieve", headers=FINOVOX, json=token)).json()["decision"]
    assert decision == {"status": "rejected", "status_fraud": fraud, "status_validation": validation}


async def test_case_failed_folder_is_500(client, emu):
    token = (await client.post("/finovox/case", headers=FINOVOX, **case_files("id.pdf", "fail.pdf"))).json()
    assert (await client.post("/finovox/case/retrieve", headers=FINOVOX, json=token)).status_code == 202
    emu.advance(1.0)
    failed = await client.post("/finovox/case/retrieve", headers=FINOVOX, json=token)
    assert failed.status_code == 500
    assert failed.json() == {"detail": "The async folder failed and could not produce a final result."}


async def test_case_sync_mode(client):
    synchronous = case_files("id.pdf", asynchronous=False)
    answered = await client.post("/finovox/case", headers=FINOVOX, **synchronous)
    assert answered.status_code == 200
    assert answered.json()["decision"]["status"] == "approved"
    failing = case_files("fail.pdf", asynchronous=False)
    assert (await client.post("/finovox/case", headers=FINOVOX, **failing)).status_code == 500


async def test_case_token_errors(client, emu):
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
    ids=["no-documents", "no-use-case", "analyse-type", "format"],
)
async def test_case_validation(client, kwargs, message):
    response = await client.post("/finovox/case", headers=FINOVOX, **kwargs)
    assert response.status_code == 422
    assert message in response.json()["detail"]
