"""
The results store on object storage as users run it (an S3 server, through an ``aws`` connection) and on
``file://``: every operation gives the same answer on both, including an empty run prefix, a missing
key, and a record another process wrote since this one last listed.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
from conftest import distinct_pdf, load_dags
from s3 import Place
from test_dags import xcoms

from airflow_docjobs.hooks.calls import JobStatus
from airflow_docjobs.ingest.vendors import READERS
from airflow_docjobs.results import ResultsStore, fernet, job_key, landed_record, read_json, write_json
from airflow_docjobs.triggers.job import INLINE_LIMIT, DocJobTrigger

LIST_DAGS = Path(__file__).parent / "dags" / "docjobs_list_dags.py"
TOKEN = "fvx-secret-retrieve-token"  # what a Finovox reference looks like: a secret


@pytest.fixture(params=["file", "s3"])
def store_base(request, tmp_path) -> Place:
    """The results store's base: once a local folder (a file:// URI), once a prefix of an S3 bucket."""
    if request.param == "s3":
        return Place(bucket=request.getfixturevalue("s3"), prefix="results")
    return Place(folder=tmp_path / "results", file_uri=True)


def put_behind(place: Place, uri: str, payload: object) -> None:
    """Write a record as another process would (boto3, or the local file system), not through ours."""
    place.put(place.relative(uri), json.dumps(payload).encode())


def raw(place: Place, uri: str) -> bytes:
    """The bytes of a stored record, read without our code."""
    return place.get(place.relative(uri))


def run_store(base: str, run_id: str = "manual__1") -> ResultsStore:
    return ResultsStore(base, "finovox", "docjobs_store", run_id)


def job(token: str = TOKEN) -> dict:
    return {"retrieve_token": token, "analysis": "document"}


def record(state: str = "succeeded") -> dict:
    return landed_record("finovox", {"analysis": "document"}, JobStatus(state, result={"risk": "low"}))


def test_an_empty_run_has_nothing_landed(store_base):
    store = run_store(store_base.location())
    assert store.landed_keys() == set()
    assert store.landed(job()) is None


def test_a_landed_record_is_read_back_and_listed(store_base):
    store = run_store(store_base.location())
    uri = store.land(job(), record())
    assert uri == store.uri(job_key(job()))
    assert store.landed(job())["result"] == {"risk": "low"}
    assert read_json(uri)["state"] == "succeeded"
    assert store.landed_keys() == {job_key(job())}
    # A store's own files (a batch's inputs, outcomes) are not landed jobs.
    write_json(store.named("_submitted", "batch.json"), [{"input": "a.pdf"}])
    write_json(store.named("wait.outcomes.json"), [])
    assert store.landed_keys() == {job_key(job())}


def test_a_missing_record_reads_as_missing(store_base):
    store = run_store(store_base.location())
    store.land(job(), record())
    with pytest.raises(FileNotFoundError):
        read_json(store.named("_submitted", "nothing.json"))
    with pytest.raises(FileNotFoundError):
        read_json(store.uri("not-landed"))
    assert store.landed(job("other")) is None


def test_what_another_process_landed_is_seen_after_a_listing(store_base):
    """A triggerer lands while a worker lists and reads: no listing cached by this process hides it."""
    store = run_store(store_base.location())
    store.land(job("first"), record())
    assert store.landed_keys() == {job_key(job("first"))}
    put_behind(store_base, store.uri(job_key(job("second"))), {**record("failed"), "landed_at": "now"})
    assert store.landed_keys() == {job_key(job("first")), job_key(job("second"))}
    assert store.landed(job("second"))["state"] == "failed"


def test_runs_and_vendors_do_not_see_each_other(store_base):
    one, other = run_store(store_base.location(), "run_1"), run_store(store_base.location(), "run_2")
    one.land(job(), record())
    assert other.landed_keys() == set()
    assert ResultsStore(store_base.location(), "mindee", "docjobs_store", "run_1").landed_keys() == set()


def test_a_large_job_list_spills_to_the_store_encrypted(store_base):
    store = run_store(store_base.location())
    jobs = [job(f"{TOKEN}-{i:05d}") for i in range(INLINE_LIMIT // 20)]
    packed = DocJobTrigger.pack(jobs, store)
    assert "rows" not in packed
    assert packed["columns_uri"].startswith(store.prefix + "/_jobs/")
    assert TOKEN.encode() not in raw(store_base, packed["columns_uri"])
    assert DocJobTrigger.unpack(packed) == jobs
    # The job list is the store's own file, never a landed job.
    assert store.landed_keys() == set()


def test_a_job_list_spilled_as_rows_by_an_earlier_version_still_reads(store_base):
    """A batch deferred before an upgrade (rows, ``rows_uri``) resumes on the upgraded triggerer."""
    store = run_store(store_base.location())
    jobs = [job(f"{TOKEN}-{i:05d}") for i in range(50)]
    uri = store.named("_jobs", "earlier.json")
    rows = json.dumps([[j["retrieve_token"]] for j in jobs])
    write_json(uri, {"fernet": fernet().encrypt(rows.encode()).decode()})
    packed = {"common": {"analysis": "document"}, "keys": ["retrieve_token"], "rows_uri": uri, "count": 50}
    assert DocJobTrigger.unpack(packed) == jobs


def test_a_store_path_reads_as_its_uri(store_base):
    store = run_store(store_base.location(), "scheduled__2026-01-01T00:00:00+00:00")
    assert store.prefix.startswith(store_base.location() + "/finovox/docjobs_store/")
    uri = store.land(job(), record())
    assert json.loads(raw(store_base, uri))["state"] == "succeeded"


# ---- real runs: the sensor and the trigger on the store ----------------------------------------------


@pytest.fixture(scope="module")
def list_dags(airflow_db):
    return load_dags(LIST_DAGS)


@pytest.mark.dagtest
@pytest.mark.parametrize("mode", ["deferrable", "poke"])
def test_one_sensor_waits_for_mapped_jobs_on_the_store(list_dags, emulator, store_base, monkeypatch, mode):
    """References that did not come from a list submit: the run's prefix is empty at the first poke."""
    monkeypatch.setenv("AIRFLOW__DOCJOBS__RESULTS_URI", store_base.location())
    dag_run = list_dags[f"docjobs_list_docimprint_{mode}"].test(run_conf={"files": []})
    tis = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert dag_run.state == "success", tis
    outcomes = xcoms(dag_run)[("wait", "return_value")]
    assert [o["state"] for o in outcomes] == ["succeeded", "failed", "succeeded"]
    assert all(o["result_uri"].startswith(store_base.location() + "/") for o in outcomes)
    assert json.loads(raw(store_base, outcomes[0]["result_uri"]))["state"] == "succeeded"
    store = ResultsStore(store_base.location(), "docimprint", dag_run.dag_id, dag_run.run_id)
    assert json.loads(raw(store_base, store.named("wait.outcomes.json"))) == outcomes


# ---- object storage only ------------------------------------------------------------------------------


def test_landing_a_result_is_one_put(s3):
    store = run_store(s3.uri("results"))
    before = len(s3.journal())
    store.land(job(), record())
    # One request: no bucket check, no folder marker, no read back.
    assert [method for method, *_ in s3.journal()[before:]] == ["PUT"]


def test_a_store_in_a_missing_bucket_is_an_error_and_no_bucket_is_made(s3):
    store = ResultsStore(f"s3://{s3.conn_id}@docjobs-no-such-bucket/results", "finovox", "d", "r")
    with pytest.raises(OSError):  # noqa: PT011 - s3fs says FileNotFoundError (NoSuchBucket); any OSError
        store.land(job(), record())
    buckets = [b["Name"] for b in s3.server.client().list_buckets()["Buckets"]]
    assert "docjobs-no-such-bucket" not in buckets


@pytest.mark.dagtest
def test_no_finovox_token_in_the_store_or_the_outcomes(
    list_dags, emulator, store_base, tmp_path, monkeypatch, capfd
):
    monkeypatch.setenv("AIRFLOW__DOCJOBS__RESULTS_URI", store_base.location())
    files = [str(distinct_pdf(tmp_path, n)) for n in ("a.pdf", "fail.pdf", "b.pdf")] + [
        str(tmp_path / "x.pdf")
    ]
    dag_run = list_dags["docjobs_list_finovox_poke"].test(run_conf={"files": files})
    assert dag_run.state == "success", {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    values = xcoms(dag_run)
    tokens = [t for t in values[("submit", "return_value")] if t]  # the submit's XCom holds them, by design
    outcomes = values[("wait", "return_value")]
    assert len(tokens) == 3
    stored = store_base.files()
    assert any(name.endswith("wait.outcomes.json") for name in stored)
    leaks = [name for name, body in stored.items() for token in tokens if token.encode() in body]
    assert leaks == []
    assert not any(token in json.dumps(outcomes) for token in tokens)
    logs = capfd.readouterr()
    assert not any(token in logs.out + logs.err for token in tokens)
    # An outcome still names its job: the digest the landed record's job holds, and ingestion reads it so.
    for token, outcome in zip(tokens, outcomes, strict=False):
        digest = hashlib.sha256(token.encode()).hexdigest()
        assert outcome["reference"] == f"sha256:{digest}"
        assert read_json(outcome["result_uri"])["job"]["retrieve_token_sha256"] == digest
        reader = READERS["finovox"]
        assert reader.public_reference(outcome["reference"], "document") == reader.public_reference(
            token, "document"
        )
    assert outcomes[-1]["reference"] is None  # the missing file was rejected


# ---- the store is checked before the first submit (issue 18) ------------------------------------------


def unwritable_store(kind: str, tmp_path: Path, s3, monkeypatch) -> str:
    """A results URI this worker cannot write, for each way that happens."""
    if kind == "missing bucket":
        return f"s3://{s3.conn_id}@docjobs-no-such-bucket/results"
    if kind == "no s3 filesystem":
        monkeypatch.setitem(sys.modules, "s3fs", None)  # as when s3fs is not installed
        monkeypatch.setenv("AIRFLOW_CONN_DOCJOBS_NO_FS", s3.server.connection_json())
        return f"s3://docjobs_no_fs@{s3.name}/results"
    (tmp_path / "a-file").write_text("not a folder")
    return f"file://{tmp_path}/a-file/results"


@pytest.mark.dagtest
@pytest.mark.parametrize("kind", ["missing bucket", "no s3 filesystem", "unwritable file"])
def test_a_store_the_worker_cannot_write_fails_the_submit_before_any_vendor_request(
    list_dags, emulator, s3, tmp_path, monkeypatch, capfd, kind
):
    results_uri = unwritable_store(kind, tmp_path, s3, monkeypatch)
    monkeypatch.setenv("AIRFLOW__DOCJOBS__RESULTS_URI", results_uri)
    files = [str(distinct_pdf(tmp_path, "a.pdf"))]
    dag_run = list_dags["docjobs_list_mindee_poke"].test(run_conf={"files": files})
    tis = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    assert tis["submit"].state == "failed"
    assert tis["submit"].try_number == 1  # not retried, although the DAG allows a retry
    assert emulator.state.requests == []  # the vendor was never asked (nor paid)
    logs = capfd.readouterr()
    text = logs.out + logs.err
    assert f"[docjobs] results_uri: the results store {results_uri!r} cannot be written" in text
    assert "Nothing was submitted" in text
    if kind == "unwritable file":
        assert "use a folder every worker and triggerer can write" in text
    else:
        assert "install apache-airflow-providers-amazon and s3fs" in text
        assert "s3://{aws_conn_id}@bucket/prefix" in text
    buckets = [b["Name"] for b in s3.server.client().list_buckets()["Buckets"]]
    assert "docjobs-no-such-bucket" not in buckets
