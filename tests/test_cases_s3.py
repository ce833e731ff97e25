"""A folder of case folders on object storage (``cases="s3://conn@bucket/prefix/"``) is a batch of its cases."""

from __future__ import annotations

from conftest import journal

from airflow_docjobs.hooks.finovox import FinovoxHook
from airflow_docjobs.operators.finovox import FinovoxSubmitCaseOperator

PDF = b"%PDF-1.4\n%% {name}\n%%EOF\n"


def test_case_folders_under_an_s3_prefix_keep_their_uris(s3, emulator):
    for case in ("case-a", "case-b"):
        for name in ("id_card", "payslip"):
            s3.put(f"cases/{case}/{name}.pdf", PDF.replace(b"{name}", f"{case}/{name}".encode()))
    operator = FinovoxSubmitCaseOperator(task_id="submit", cases=s3.uri("cases") + "/", use_case="rental")

    cases = operator.batch_items()

    # Not "s3:/docjobs_s3@...": a case's URI is its documents' prefix, not a local path's parent.
    assert cases == [s3.uri("cases/case-a"), s3.uri("cases/case-b")]
    with FinovoxHook() as hook:
        hook.submit(operator.documents_of(cases[0]), analysis="case", use_case="rental")
    assert len(journal(emulator, "/finovox/case", "POST")) == 1
