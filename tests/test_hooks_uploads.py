"""
Uploads are streamed from disk or object storage, never read whole into memory, and streamed in full
again when a submit is resent. What the emulator received is read back from what it derives from the
bytes (a document's values hash its content) and from the journal's ``content-length`` headers.
"""

from __future__ import annotations

import tracemalloc
from typing import TYPE_CHECKING

import httpx
import pytest
from conftest import FIXTURES, KINDS, Kind, journal

from airflow_docjobs.emulator import Fault
from airflow_docjobs.hooks.biros import BirosHook
from airflow_docjobs.hooks.mindee import MindeeHook

if TYPE_CHECKING:
    from pathlib import Path

    from airflow_docjobs.hooks.base import DocJobsHook
    from airflow_docjobs.hooks.calls import Call

SIZE = 300_000  # several of httpx's 64 KiB chunks
LARGE = 8_000_000  # a file whose copy in memory would show
UPLOADING = [kind for kind in KINDS if kind.name != "docimprint"]  # docimprint takes URLs


def big_pdf(folder: Path, name: str = "big.pdf", filler: bytes = b"x", size: int = SIZE) -> Path:
    """The sample PDF padded with a PDF comment to ``size`` bytes; ``filler`` changes its content."""
    folder.mkdir(parents=True, exist_ok=True)
    head = (FIXTURES / "invoice.pdf").read_bytes() + b"\n%"
    path = folder / name
    path.write_bytes(head + filler * (size - len(head) - 1) + b"\n")
    return path


def upload_call(kind: Kind, document: str) -> tuple[DocJobsHook, Call]:
    hook = kind.hook()
    return hook, hook.submit_call(kind.input_of(document), **kind.params)


@pytest.mark.parametrize("location", ["path", "file:// URI"])
@pytest.mark.parametrize("kind", UPLOADING, ids=[kind.name for kind in UPLOADING])
def test_an_upload_is_streamed_never_read_whole(emulator, tmp_path, kind, location):
    path = big_pdf(tmp_path, size=LARGE)
    hook, call = upload_call(kind, str(path) if location == "path" else f"file://{path}")
    sent, largest = 0, 0
    with hook:
        with hook._request(call) as request:  # once before measuring: first imports allocate too
            for _ in request.stream:
                pass
        tracemalloc.start()
        try:
            with hook._request(call) as request:
                with pytest.raises(httpx.RequestNotRead):
                    request.content  # noqa: B018 - the body is not built in memory
                for chunk in request.stream:  # what the client sends, piece by piece
                    sent, largest = sent + len(chunk), max(largest, len(chunk))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert sent == int(request.headers["content-length"]) > LARGE
    assert largest < LARGE // 10, (largest, peak)
    assert peak < LARGE // 4, (largest, peak)


async def mindee_prediction(emulator, path: Path, *, fail_first: bool, sync: bool) -> dict:
    """Submit ``path`` to Mindee (the first attempt answered 503 when ``fail_first``); its prediction."""
    if fail_first:
        emulator.state.faults.append(Fault(vendor="mindee", path="/predict_async", status=503, times=1))
    if sync:
        with MindeeHook() as hook:
            job_id = hook.submit(str(path), product="invoices", version="v4")
    else:
        async with MindeeHook() as hook:
            job_id = await hook.asubmit(str(path), product="invoices", version="v4")
    emulator.state.advance(5)
    with MindeeHook() as hook:
        result = hook.get_job_status(MindeeHook.job_reference(job_id, "invoices", "v4")).result
    return result["document"]["inference"]["prediction"]


@pytest.mark.parametrize("path", ["sync", "async"])
async def test_a_resent_submit_streams_the_whole_file_again(emulator, tmp_path, path):
    document = big_pdf(tmp_path / "a")
    resent = await mindee_prediction(emulator, document, fail_first=True, sync=path == "sync")
    uploads = journal(emulator, "/predict_async")
    lengths = {int(r["headers"]["content-length"]) for r in uploads}
    assert len(uploads) == 2
    assert len(lengths) == 1
    assert lengths.pop() > SIZE
    # The emulator's values hash the bytes it received: the resent upload reads as the same document...
    assert resent == await mindee_prediction(emulator, document, fail_first=False, sync=True)
    # ... and as another one once a single byte differs.
    other = big_pdf(tmp_path / "b", filler=b"y")
    assert resent != await mindee_prediction(emulator, other, fail_first=False, sync=True)


@pytest.mark.parametrize("kind", UPLOADING, ids=[kind.name for kind in UPLOADING])
def test_every_upload_is_sent_whole_on_each_attempt(emulator, tmp_path, kind):
    document = big_pdf(tmp_path)
    emulator.state.faults.append(Fault(vendor=kind.vendor, path=kind.submit_path, status=503, times=1))
    hook, call = upload_call(kind, str(document))
    with hook:
        assert hook.check(hook.send(call))  # the second attempt was taken
    uploads = kind.submits(emulator)
    lengths = {int(r["headers"]["content-length"]) for r in uploads}
    assert len(uploads) == 2
    assert len(lengths) == 1
    assert lengths.pop() > SIZE


def test_an_object_storage_uri_is_uploaded_as_the_file_itself(emulator, tmp_path):
    document = big_pdf(tmp_path)
    other = big_pdf(tmp_path / "other", filler=b"y")
    sources = (str(document), f"file://{document}", f"file://{other}")
    with BirosHook() as hook:
        ids = [hook.submit(source, service_id="svc-1") for source in sources]
        emulator.state.advance(5)
        pages = [
            hook.get_job_status(BirosHook.job_reference(i, "svc-1")).result["document_pages"] for i in ids
        ]
    # The myBiros emulator derives the entities it extracts from the name and the bytes it received.
    local, uri, changed = (p[0]["entities"] for p in pages)
    assert uri == local
    assert changed != local
    assert all(int(r["headers"]["content-length"]) > SIZE for r in journal(emulator, "/async-predict"))
