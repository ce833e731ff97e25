"""
The emulator package as a whole, and what the ``test_emulator_*`` modules share: the in-process app and
client fixtures (import them by their ``*_fixture`` names), vendor headers, request helpers and a runner
for the emulator's command line.
"""

from __future__ import annotations

import contextlib
import json
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

import airflow_docjobs.emulator as package
from airflow_docjobs.emulator import app as app_module
from airflow_docjobs.emulator import core
from airflow_docjobs.emulator.core import Emulator, EmulatorSettings
from airflow_docjobs.emulator.values import Seeded, seed_of

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[1]
KEY = "emulator"
PDF = (Path(__file__).parent / "fixtures" / "invoice.pdf").read_bytes()
FINOVOX = {"api-key": KEY}
MINDEE = {"Authorization": f"Token {KEY}"}
DOCIMPRINT = {"X-Payment": KEY}
BIROS = {"x-api-key": KEY}
INVOICES = "/mindee/v1/products/mindee/invoices/v4"


@pytest.fixture(name="app")
def app_fixture():
    return app_module.create_app(
        EmulatorSettings(api_key=KEY, processing_seconds=1.0, result_ttl_seconds=60.0, review_seconds=1.0)
    )


@pytest.fixture(name="emu")
def emu_fixture(app) -> Emulator:
    return app.state.emulator


@pytest.fixture(name="client")
async def client_fixture(app):
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://emulator"
    ) as client:
        yield client


def finovox_files(
    name: str = "payslip.pdf", asynchronous: bool = True, content: bytes = PDF, **payload
) -> dict:
    payload = {"analyse_type": ["risk"], "asynchronous": asynchronous} | payload
    return {"files": {"file": (name, content)}, "data": {"payload": json.dumps(payload)}}


def case_files(*names: str, **payload) -> dict:
    payload = {"analyse_type": ["decision"], "use_case": "rental", "asynchronous": True} | payload
    files = [("documents", (name, PDF)) for name in names]
    return {"files": files, "data": {"payload": json.dumps(payload)}}


def biros_url(document_id: str, service: str = "svc-1", query: str = "") -> str:
    return f"/biros/inference/service/{service}/predicted-documents/{document_id}{query}"


async def biros_submit(client, name: str, service: str = "svc-1", content: bytes = PDF) -> httpx.Response:
    return await client.post(
        f"/biros/inference/service/{service}/async-predict", headers=BIROS, files={"file": (name, content)}
    )


# How long the emulator process may take to print its first line: it imports Airflow, 30 s and more on two
# cores shared by the xdist workers (20 s failed in a full make test).
STARTUP_SECONDS = 120


@contextlib.contextmanager
def emulator_process(*args: str) -> Iterator[tuple[subprocess.Popen, queue.Queue[str]]]:
    """``python -m airflow_docjobs.emulator --port 0 *args``, its stdout lines, and a check it exits 0."""
    command = [sys.executable, "-m", "airflow_docjobs.emulator", "--port", "0", *args]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    try:
        yield process, lines
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=10) == 0, process.stderr.read()
        finally:
            process.kill()
            process.stdout.close()
            process.stderr.close()


# -- the package ---------------------------------------------------------------------------------------


def test_public_names_are_the_core_ones_wherever_imported():
    for name in ("Emulator", "EmulatorSettings", "Fault"):
        assert getattr(package, name) is getattr(app_module, name) is getattr(core, name)
    assert package.create_app is app_module.create_app


async def test_one_vendor_list_serves_health_and_routes(app, client):
    assert (await client.get("/_emulator/health")).json() == {"status": "ok", "vendors": list(core.VENDORS)}
    assert list(app_module.VENDOR_MODULES) == list(core.VENDORS)
    assert {route.path.split("/")[1] for route in app.routes} == {"_emulator", *core.VENDORS}


def test_core_imports_no_vendor_module():
    source = Path(core.__file__).read_text()
    assert not [v for v in core.VENDORS if f"emulator.{v}" in source or f"import {v}" in source]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"concurrency": -1}, "non-negative integer"),
        ({"concurrency": 1.5}, "non-negative integer"),
        ({"frozen_clock": 1}, "boolean"),
        ({"processing_seconds": True}, "seconds"),
        ({"api_key": 3}, "string"),
        ({"colour": "red"}, "unknown setting"),
    ],
    ids=["negative-concurrency", "float-concurrency", "int-as-bool", "bool-as-seconds", "key", "unknown"],
)
def test_settings_update_rejects_and_changes_nothing(changes, message):
    settings = EmulatorSettings()
    with pytest.raises(ValueError, match=message):
        settings.update({"review_seconds": 9} | changes)
    assert settings == EmulatorSettings()


def test_settings_update_keeps_types():
    settings = EmulatorSettings()
    settings.update({"concurrency": 3, "frozen_clock": True, "processing_seconds": 1})
    assert (settings.concurrency, settings.frozen_clock, settings.processing_seconds) == (3, True, 1.0)
    assert isinstance(settings.processing_seconds, float)


def test_seeded_values_are_stable_and_tell_inputs_apart():
    same = Seeded(seed_of("a.pdf", b"x"))
    assert same.integer("n", 1, 10**9) == Seeded(seed_of("a.pdf", b"x")).integer("n", 1, 10**9)
    seeds = [seed_of("a.pdf", b"x"), seed_of("a.pdf", b"y"), seed_of("b.pdf", b"x"), seed_of("a.pdf")]
    assert len({Seeded(seed).hexdigest("n") for seed in seeds}) == 4
    # Each label is its own value: adding one never shifts another.
    assert same.hexdigest("n") != same.hexdigest("m")
    amounts = [Seeded(str(i)).amount("total", 1.0, 2.0) for i in range(200)]
    assert all(1.0 <= a <= 2.0 and round(a, 2) == a for a in amounts)
    assert len(set(amounts)) > 50


async def test_the_files_of_an_upload_are_closed_once_answered(client, monkeypatch):
    """Starlette leaves a parsed form's files open; every vendor route closes them after its answer."""
    from starlette.datastructures import UploadFile

    closed: list[str | None] = []
    close = UploadFile.close

    async def counting_close(self: UploadFile) -> None:
        closed.append(self.filename)
        await close(self)

    monkeypatch.setattr(UploadFile, "close", counting_close)
    answer = await client.post("/finovox/case", headers=FINOVOX, **case_files("a.pdf", "b.pdf"))
    assert answer.status_code == 202, answer.text  # accepted for asynchronous analysis
    assert sorted(closed) == ["a.pdf", "b.pdf"]
