"""
Inputs on object storage as users give them (an S3 server, ``s3://{conn_id}@bucket/...``) and on local
files: a case folder, a list-mode prefix, an empty prefix, a missing document give the same answers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FIXTURES, journal, load_dags
from s3 import Place
from test_dags import xcoms

from airflow_docjobs.exceptions import DocJobsInputError
from airflow_docjobs.hooks.finovox import FinovoxHook
from airflow_docjobs.hooks.inputs import as_path, content_sha256, documents_under, folder_files

LIST_DAGS = Path(__file__).parent / "dags" / "docjobs_list_dags.py"
PDF = (FIXTURES / "invoice.pdf").read_bytes()


class Inbox(Place):
    """Where a test's documents are: a local folder, or a prefix of the test's bucket."""

    def location(self, relative: str = "") -> str:
        """What a user passes for ``relative`` (a trailing ``/`` kept: a folder or prefix)."""
        folder = relative.endswith("/") or not relative
        return super().location(relative) + ("/" if folder else "")

    def add(self, name: str) -> str:
        """A distinct PDF at ``name``, written without our code; its location."""
        self.put(name, PDF + f"\n% {name}\n".encode())
        return self.location(name)


@pytest.fixture(params=["file", "s3"])
def inbox(request, tmp_path) -> Inbox:
    if request.param == "s3":
        return Inbox(bucket=request.getfixturevalue("s3"), prefix="inbox")
    (tmp_path / "inbox").mkdir()
    return Inbox(folder=tmp_path / "inbox")


def test_a_case_folder_uploads_its_own_documents(emulator, inbox):
    for name in ("case/payslip.pdf", "case/id_card.pdf", "case/.hidden.pdf", "case/sub/other.pdf"):
        inbox.add(name)
    assert [p.name for p in folder_files(as_path(inbox.location("case/")))] == ["id_card.pdf", "payslip.pdf"]
    FinovoxHook().submit(inbox.location("case/"), analysis="case", use_case="rental")
    names = {tuple(job.data["names"]) for job in emulator.state.jobs.values() if job.kind == "case"}
    assert names == {("id_card.pdf", "payslip.pdf")}


def test_an_empty_case_folder_holds_no_documents(emulator, inbox):
    if inbox.folder is not None:
        (inbox.folder / "case").mkdir()
    with pytest.raises(DocJobsInputError, match=r"'documents'.*holds no documents"):
        FinovoxHook().submit(inbox.location("case/"), analysis="case", use_case="rental")
    assert journal(emulator, method="POST") == []


def test_a_missing_document_is_refused_before_any_request(emulator, inbox):
    with pytest.raises(DocJobsInputError, match=r"'file'.*does not exist"):
        FinovoxHook().submit(inbox.location("missing.pdf"))
    assert content_sha256(inbox.location("missing.pdf")) is None
    assert journal(emulator, method="POST") == []


def test_a_prefix_stands_for_every_document_under_it(inbox):
    for name in ("b.pdf", "sub/c.pdf", "a.pdf", ".hidden/x.pdf", "sub/.y.pdf"):
        inbox.add(name)
    assert documents_under(inbox.location()) == [inbox.location(n) for n in ("a.pdf", "b.pdf", "sub/c.pdf")]
    assert documents_under(inbox.location("nothing/")) == []


@pytest.fixture(scope="module")
def list_dags(airflow_db):
    return load_dags(LIST_DAGS)


@pytest.mark.dagtest
def test_a_list_submit_of_a_prefix_ends_with_one_outcome_per_document(
    list_dags, emulator, inbox, tmp_path, monkeypatch
):
    monkeypatch.setenv("AIRFLOW__DOCJOBS__RESULTS_URI", f"file://{tmp_path}/results")
    for name in ("b.pdf", "a.pdf"):
        inbox.add(name)
    dag_run = list_dags["docjobs_list_biros_poke"].test(run_conf={"files": inbox.location()})
    assert dag_run.state == "success"
    outcomes = xcoms(dag_run)[("wait", "return_value")]
    assert [o["input"] for o in outcomes] == [inbox.location("a.pdf"), inbox.location("b.pdf")]
    assert [o["state"] for o in outcomes] == ["succeeded", "succeeded"]


@pytest.mark.dagtest
def test_an_empty_prefix_fails_the_submit_naming_it(list_dags, emulator, inbox, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("AIRFLOW__DOCJOBS__RESULTS_URI", f"file://{tmp_path}/results")
    dag_run = list_dags["docjobs_list_biros_poke"].test(run_conf={"files": inbox.location("empty/")})
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states["submit"] == "failed"
    logs = capfd.readouterr()
    assert f"no documents in {inbox.location('empty/')!r}" in logs.out + logs.err
    assert journal(emulator, method="POST") == []


def test_each_document_is_read_from_object_storage_once(list_dags, emulator, s3, tmp_path, monkeypatch):
    """A list submit hashes, checks and uploads each object from one GET; a single submit reads it once too."""
    from airflow_docjobs.hooks.biros import BirosHook
    from airflow_docjobs.operators.biros import BirosSubmitOperator

    monkeypatch.setenv("AIRFLOW__DOCJOBS__RESULTS_URI", f"file://{tmp_path}/results")
    inbox = Inbox(bucket=s3, prefix="once")
    names = [f"{n}.pdf" for n in "abcd"]
    for name in names:
        inbox.add(name)
    s3.put("once/copy.pdf", s3.get("once/a.pdf"))  # the same content as another document: read, never sent
    before = len(s3.journal())
    dag_run = list_dags["docjobs_list_biros_poke"].test(run_conf={"files": inbox.location()})
    assert dag_run.state == "success"
    served = s3.journal()[before:]
    reads = {key: [m for m, path, _ in served if path == f"/{s3.name}/{key}"] for key in s3.keys("once/")}
    assert reads == {key: ["GET"] for key in reads}, reads
    assert len(journal(emulator, method="POST")) == len(names)

    inbox.add("single.pdf")
    before = len(s3.journal())
    operator = BirosSubmitOperator(task_id="single", file=inbox.location("single.pdf"), service_id="svc-1")
    operator.submit_one(BirosHook(), operator.file)
    assert [(m, p) for m, p, _ in s3.journal()[before:]] == [("GET", f"/{s3.name}/once/single.pdf")]


def test_each_document_of_a_case_batch_is_read_once(list_dags, emulator, s3, tmp_path, monkeypatch):
    """A list of case folders: each file is hashed (the case's identity) and uploaded from one GET."""
    monkeypatch.setenv("AIRFLOW__DOCJOBS__RESULTS_URI", f"file://{tmp_path}/results")
    inbox = Inbox(bucket=s3, prefix="cases")
    for name in ("c1/payslip.pdf", "c1/id_card.pdf", "c2/payslip.pdf", "c2/sub/ignored.pdf"):
        inbox.add(name)
    before = len(s3.journal())
    cases = [inbox.location("c1"), inbox.location("c2/")]
    dag_run = list_dags["docjobs_list_finovox_case_poke"].test(run_conf={"files": cases})
    assert dag_run.state == "success"
    served = s3.journal()[before:]
    reads = {key: [m for m, path, _ in served if path == f"/{s3.name}/{key}"] for key in s3.keys("cases/")}
    assert reads == {key: ["GET"] for key in reads}, reads
    names = {tuple(job.data["names"]) for job in emulator.state.jobs.values() if job.kind == "case"}
    assert names == {("id_card.pdf", "payslip.pdf"), ("payslip.pdf",)}
    assert len([r for r in journal(emulator, method="POST") if r["path"] == "/finovox/case"]) == 2
