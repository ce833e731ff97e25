"""
Documents are checked by content, not only by extension: a file whose first bytes are not the format its
extension names is refused before anything is sent (and paid for), like an empty file; in list mode it is a
``rejected`` outcome with the reason.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from conftest import FIXTURES, distinct_pdf, load_dags
from PIL import Image
from test_dags import xcoms

from airflow_docjobs.exceptions import DocJobsInputError
from airflow_docjobs.hooks.biros import BirosHook
from airflow_docjobs.hooks.finovox import CASE_EXTENSIONS, FinovoxHook
from airflow_docjobs.hooks.inputs import SIGNATURES, InputRules
from airflow_docjobs.hooks.mindee import EXTENSIONS as MINDEE_EXTENSIONS
from airflow_docjobs.hooks.mindee import MindeeHook

# The first bytes of a real HEIC photo (an ISO BMFF ftyp box, brand heic); Pillow writes no HEIC.
HEIC_HEAD = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)
PILLOW_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
}


def real_file(folder: Path, suffix: str) -> Path:
    """A real file of the format ``suffix`` names: PDF from the fixtures, images from Pillow."""
    path = folder / f"doc{suffix}"
    if suffix == ".pdf":
        path.write_bytes((FIXTURES / "invoice.pdf").read_bytes())
    elif suffix == ".heic":
        path.write_bytes(HEIC_HEAD)
    else:
        buffer = io.BytesIO()
        Image.new("RGB", (4, 4), "white").save(buffer, PILLOW_FORMATS[suffix])
        path.write_bytes(buffer.getvalue())
    return path


RULES = InputRules("Mindee", "mindee_default", MINDEE_EXTENSIONS)


@pytest.mark.parametrize("suffix", sorted(MINDEE_EXTENSIONS))
def test_every_format_a_vendor_accepts_passes_when_it_is_that_format(tmp_path, suffix):
    upload = RULES.file(str(real_file(tmp_path, suffix)), param="document", field="document")
    assert upload.filename == f"doc{suffix}"


def test_every_accepted_extension_with_a_signature_is_checked():
    # Only the applicants' JSON forms have no signature to check.
    assert (MINDEE_EXTENSIONS | CASE_EXTENSIONS) - set(SIGNATURES) == {".json"}


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("fake.pdf", b"just some text, not a PDF\n", "its content is not PDF as its extension .pdf says"),
        (
            "scan.jpg",
            b"%PDF-1.4\n",
            "its content is not JPEG as its extension .jpg says (it looks like a PDF",
        ),
        (
            "photo.heic",
            b"\x89PNG\r\n\x1a\n" + bytes(16),
            "not HEIC as its extension .heic says (it looks like a PNG",
        ),
    ],
    ids=["text as pdf", "pdf as jpg", "png as heic"],
)
def test_a_mismatch_fails_before_any_request(emulator, tmp_path, name, content, problem):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DocJobsInputError) as err:
        MindeeHook().submit(str(path), product="invoices", version="v4")
    message = str(err.value)
    assert "parameter 'document'" in message
    assert problem in message
    assert "nothing was sent" in message
    assert "mindee_default" in message
    assert emulator.state.requests == []


@pytest.mark.parametrize(
    "submit",
    [
        lambda path: FinovoxHook().submit(path),
        lambda path: BirosHook().submit(path, service_id="svc"),
        lambda path: FinovoxHook().submit([path], analysis="case", use_case="rental"),
    ],
    ids=["finovox", "biros", "finovox case"],
)
def test_every_vendor_checks_content(emulator, tmp_path, submit):
    fake = tmp_path / "fake.pdf"
    fake.write_text("a text file named like a PDF")
    with pytest.raises(DocJobsInputError, match="its content is not PDF"):
        submit(str(fake))
    assert emulator.state.requests == []


@pytest.fixture
def results_uri(tmp_path, monkeypatch):
    uri = f"file://{tmp_path / 'results'}"
    monkeypatch.setenv("AIRFLOW__DOCJOBS__RESULTS_URI", uri)
    return uri


def test_a_mismatch_in_a_batch_is_a_rejected_outcome(airflow_db, emulator, results_uri, tmp_path, capfd):
    fake = tmp_path / "fake.pdf"
    fake.write_text("a text file named like a PDF")
    good = distinct_pdf(tmp_path, "good.pdf")
    dags = load_dags(Path(__file__).parent / "dags" / "docjobs_list_dags.py")
    dag_run = dags["docjobs_list_mindee_poke"].test(run_conf={"files": [str(fake), str(good)]})
    assert dag_run.state == "success"
    outcomes = xcoms(dag_run)[("wait", "return_value")]
    assert [o["state"] for o in outcomes] == ["rejected", "succeeded"]
    assert outcomes[0]["error"]["code"] == "invalid_input"
    assert "its content is not PDF" in outcomes[0]["error"]["message"]
    assert len([r for r in emulator.state.requests if r["path"].endswith("/predict_async")]) == 1
    # The log names the rejected file, its code and reason, not only counts.
    logs = "".join(capfd.readouterr())
    assert f"rejected {fake}: invalid_input (" in logs
    assert "its content is not PDF" in logs
