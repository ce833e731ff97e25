"""
Bad input fails before any network call, with a message naming the parameter and the connection, and
creates no vendor job (docs/reliability.md, "Bad input"). In list mode the same inputs become
``rejected`` outcomes instead (tests/test_list_mode.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import load_dags

from airflow_docjobs.exceptions import DocJobsInputError
from airflow_docjobs.hooks.biros import BirosHook
from airflow_docjobs.hooks.docimprint import DocimprintHook
from airflow_docjobs.hooks.finovox import FinovoxHook
from airflow_docjobs.hooks.mindee import MindeeHook
from airflow_docjobs.hooks.mindee_v2 import MindeeV2Hook

DAGS = Path(__file__).parent / "dags" / "docjobs_retry_dags.py"


def sample(folder: Path, name: str, content: bytes = b"%PDF-1.4 sample") -> str:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return str(path)


CASES = {
    "missing file": (
        lambda d: FinovoxHook().submit(str(d / "nope.pdf")),
        "'file'",
        "does not exist",
    ),
    "empty file": (lambda d: FinovoxHook().submit(sample(d, "a.pdf", b"")), "'file'", "is empty"),
    "folder without documents": (
        lambda d: FinovoxHook().submit(
            str((d / "case").mkdir() or d / "case"), analysis="case", use_case="rental"
        ),
        "'documents'",
        "holds no documents",
    ),
    "unsupported extension": (
        lambda d: FinovoxHook().submit(sample(d, "a.docx")),
        "'file'",
        "unsupported extension .docx",
    ),
    "plain-HTTP Mindee URL": (
        lambda d: MindeeHook().submit("http://example.com/a.pdf", product="invoices", version="v4"),
        "'document'",
        "only fetches public https:// URLs",
    ),
    "unknown analyse_type": (
        lambda d: FinovoxHook().submit(
            [sample(d, "a.pdf")], analysis="case", use_case="rental", analyse_type=["verdict"]
        ),
        "'analyse_type'",
        "unknown ['verdict']",
    ),
    "docimprint endpoint that is not a name": (
        lambda d: DocimprintHook().submit("https://example.com/a.pdf", endpoint="../admin"),
        "'endpoint'",
        "expected an endpoint name",
    ),
    "docimprint options that override the source": (
        lambda d: DocimprintHook().submit(
            "https://example.com/a.pdf", endpoint="qa", options={"source": "https://example.com/b.pdf"}
        ),
        "'options'",
        "without source or webhook",
    ),
    "docimprint options that are not JSON": (
        lambda d: DocimprintHook().submit("https://example.com/a.pdf", endpoint="qa", options={"q": {1, 2}}),
        "'options'",
        "not JSON",
    ),
    "docimprint batch to a focused endpoint": (
        lambda d: DocimprintHook().submit(["https://example.com/a.pdf"], endpoint="summarize"),
        "'source'",
        "takes one source per job",
    ),
    "object store without its filesystem": (
        lambda d: MindeeHook().submit("nosuchfs://bucket/a.pdf", product="invoices", version="v4"),
        "'document'",
        "no filesystem for nosuchfs:// is installed",
    ),
    "a case path that is no folder": (
        lambda d: FinovoxHook().submit(str(d / "nofolder"), analysis="case", use_case="rental"),
        "'documents'",
        "is not a folder; pass a folder or a list of files",
    ),
    "a case without a use case": (
        lambda d: FinovoxHook().submit([sample(d, "a.pdf")], analysis="case", use_case=""),
        "'use_case'",
        "expected a use case name such as 'rental', got ''",
    ),
    "a Finovox analysis that does not exist": (
        lambda d: FinovoxHook().submit(sample(d, "a.pdf"), analysis="folder"),
        "'analysis'",
        "expected 'document' or 'case', got 'folder'",
    ),
    "a list of files as one Finovox document": (
        lambda d: FinovoxHook().submit([sample(d, "a.pdf")]),
        "'file'",
        "a list of files is a case (analysis='case')",
    ),
    "a use case for a Finovox document": (
        lambda d: FinovoxHook().submit(sample(d, "a.pdf"), use_case="rental"),
        "'use_case'",
        "only a case (analysis='case') takes a use case",
    ),
    "a Mindee product that is not one path segment": (
        lambda d: MindeeHook().submit(sample(d, "a.pdf"), product="invoices/x", version="v4"),
        "'product'",
        "expected one URL path segment such as 'invoices', got 'invoices/x'",
    ),
    "Mindee base64 that does not decode": (
        lambda d: MindeeHook().submit("base64:!!notbase64", product="invoices", version="v4"),
        "'document'",
        "the base64 content does not decode",
    ),
    "plain-HTTP Mindee v2 URL": (
        lambda d: MindeeV2Hook().submit("http://example.com/a.pdf", model_id="m-1"),
        "'document'",
        "only fetches public https:// URLs",
    ),
    "a Mindee v2 model id that is not an id": (
        lambda d: MindeeV2Hook().submit(sample(d, "a.pdf"), model_id="../models"),
        "'model_id'",
        "expected the model's id from the Mindee platform, got '../models'",
    ),
    "a Mindee v2 product that does not exist": (
        lambda d: MindeeV2Hook().submit(sample(d, "a.pdf"), model_id="m-1", product="invoices"),
        "'product'",
        "expected one of extraction, classification, crop, ocr, split, got 'invoices'",
    ),
    "a Mindee v2 extraction option for another product": (
        lambda d: MindeeV2Hook().submit(sample(d, "a.pdf"), model_id="m-1", product="ocr", rag=True),
        "'rag'",
        "only the extraction product takes it, not 'ocr'",
    ),
    "a Mindee v2 option that is not a boolean": (
        lambda d: MindeeV2Hook().submit(sample(d, "a.pdf"), model_id="m-1", confidence="yes"),
        "'confidence'",
        "expected True, False or None, got 'yes'",
    ),
    "Mindee v2 webhook ids that are one string": (
        lambda d: MindeeV2Hook().submit(sample(d, "a.pdf"), model_id="m-1", webhook_ids="w-1"),
        "'webhook_ids'",
        "expected a list of webhook ids, got 'w-1'",
    ),
    "a docimprint source that is neither a URL, a file nor a list": (
        lambda d: DocimprintHook().submit(42),
        "'source'",
        "expected a URL, a file path or a list of URLs, got 42",
    ),
    "a docimprint upload that is not a document": (
        lambda d: DocimprintHook().submit(sample(d, "a.exe")),
        "'source'",
        "unsupported extension .exe",
    ),
    "a docimprint upload to a focused endpoint": (
        lambda d: DocimprintHook().submit(sample(d, "a.pdf"), endpoint="qa"),
        "'source'",
        "the 'qa' endpoint takes a URL; only extract takes an uploaded file",
    ),
    "a file in a docimprint batch": (
        lambda d: DocimprintHook().submit(["https://example.com/a.pdf", sample(d, "b.pdf")]),
        "'source'",
        "a batch takes URLs only",
    ),
    "an empty docimprint batch": (
        lambda d: DocimprintHook().submit([]),
        "'source'",
        "expected a non-empty list of URLs for a batch",
    ),
    "a myBiros service id that is empty": (
        lambda d: BirosHook().submit(sample(d, "a.pdf"), service_id=""),
        "'service_id'",
        "expected a non-empty id, got ''",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_before_any_request(emulator, tmp_path, case):
    call, param, problem = CASES[case]
    with pytest.raises(DocJobsInputError) as err:
        call(tmp_path)
    message = str(err.value)
    assert f"parameter {param}" in message
    assert problem in message
    assert "_default'" in message
    assert emulator.state.requests == []


@pytest.mark.parametrize(
    ("conn", "problem"),
    [
        (
            {"conn_type": "finovox", "password": "k"},
            "is of type 'finovox'; a Mindee hook needs a 'mindee' one",
        ),
        ({"conn_type": "mindee"}, "has no API key in its password field"),
    ],
    ids=["wrong type", "no secret"],
)
def test_a_connection_that_cannot_work_is_named(emulator, monkeypatch, tmp_path, conn, problem):
    monkeypatch.setenv("AIRFLOW_CONN_BAD", json.dumps({"host": emulator.vendor_url("mindee")} | conn))
    with pytest.raises(DocJobsInputError, match=problem) as err:
        MindeeHook("bad").submit(sample(tmp_path, "a.pdf"), product="invoices", version="v4")
    assert "connection 'bad'" in str(err.value)
    assert emulator.state.requests == []


@pytest.mark.parametrize(
    ("rendered", "problem"),
    [("", "expected a file path or object-storage URI, got ''"), ({"a": 1}, "got {'a': 1}")],
    ids=["empty", "wrong type"],
)
def test_a_template_that_renders_badly_fails_the_task_before_any_request(
    airflow_db, emulator, capfd, rendered, problem
):
    dag_run = load_dags(DAGS)["docjobs_bad_template"].test(run_conf={"doc": rendered})
    assert dag_run.state == "failed"
    logs = capfd.readouterr()
    assert "parameter 'document'" in logs.out + logs.err
    assert problem in logs.out + logs.err
    assert emulator.state.requests == []
