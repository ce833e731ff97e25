"""
List mode in real ``dag.test()`` runs against the emulator: one submit task sends a batch, one sensor (one
trigger) waits for all of it, results land in the results store, and one bad input never sinks the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import distinct_pdf, journal, load_dags
from test_dags import xcoms

from airflow_docjobs.emulator import Fault
from airflow_docjobs.operators.base import ITEM_KEY, STARTED_KEY
from airflow_docjobs.results import read_json

DAG_FILE = Path(__file__).parent / "dags" / "docjobs_list_dags.py"
SUBMIT_PATHS = {
    "finovox": "/finovox/analyse",
    "finovox_case": "/finovox/case",
    "mindee": "/predict_async",
    "mindee_v2": "/mindee_v2/v2/products/extraction/enqueue",
    "biros": "/async-predict",
    "docimprint": "/docimprint/v1/extract",
    "docimprint_files": "/docimprint/v1/extract",
}


@pytest.fixture(scope="module")
def dags(airflow_db):
    return load_dags(DAG_FILE)


@pytest.fixture
def results_uri(tmp_path, monkeypatch):
    """Every run of the test lands its results in its own store."""
    uri = f"file://{tmp_path / 'results'}"
    monkeypatch.setenv("AIRFLOW__DOCJOBS__RESULTS_URI", uri)
    return uri


def pdf(folder: Path, name: str) -> str:
    """A distinct sample PDF, as the text a DAG's run conf carries."""
    return str(distinct_pdf(folder, name))


def inputs_for(vendor: str, folder: Path) -> tuple[list[str], list[str]]:
    """The batch given to the submit and the outcome states expected, in input order."""
    if vendor == "finovox_case":
        for name in ("case_ok/payslip.pdf", "case_ok/id_card.pdf", "case_fail/fail.pdf"):
            pdf(folder, name)
        (folder / "case_empty").mkdir()
        cases = [str(folder / c) for c in ("case_ok", "case_fail", "case_empty", "case_missing")]
        return cases, ["succeeded", "failed", "rejected", "rejected"]
    files = [pdf(folder, "ok_1.pdf"), pdf(folder, "fail.pdf"), str(folder / "missing.pdf")]
    (folder / "notes.txt").write_text("not a document")
    files += [str(folder / "notes.txt"), pdf(folder, "ok_2.pdf")]
    # Finovox document analysis has no failed state: "fail" only reads as a high risk.
    second = "succeeded" if vendor == "finovox" else "failed"
    # docimprint extracts text files too (its own examples upload one).
    fourth = "succeeded" if vendor == "docimprint_files" else "rejected"
    return files, ["succeeded", second, "rejected", fourth, "succeeded"]


def run(dags, dag_id, files):
    dag_run = dags[dag_id].test(run_conf={"files": files})
    return dag_run, {ti.task_id: ti for ti in dag_run.get_task_instances()}


@pytest.mark.parametrize("mode", ["deferrable", "poke"])
@pytest.mark.parametrize(
    "vendor", ["finovox", "finovox_case", "mindee", "mindee_v2", "biros", "docimprint_files"]
)
def test_a_batch_ends_with_one_outcome_per_input(dags, emulator, results_uri, tmp_path, capfd, vendor, mode):
    files, expected = inputs_for(vendor, tmp_path / "inbox")
    # Long enough that the sensor's first round of polls finds the jobs pending even on a loaded machine,
    # so that a deferrable sensor really defers.
    emulator.state.settings.update({"processing_seconds": 2.0 if mode == "deferrable" else 0.5})
    dag_run, tis = run(dags, f"docjobs_list_{vendor}_{mode}", files)
    assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}
    values = xcoms(dag_run)
    references = values[("submit", "return_value")]
    outcomes = values[("wait", "return_value")]
    assert [o["state"] for o in outcomes] == expected
    assert [r is None for r in references] == [s == "rejected" for s in expected]
    assert [o["input"] for o in outcomes] == [str(f) for f in files]
    for outcome in outcomes:
        assert set(outcome) == {"reference", "input", "sha256", "state", "error", "result_uri"}
        if outcome["state"] == "succeeded":
            landed = read_json(outcome["result_uri"])
            assert landed["state"] == "succeeded"
            assert landed["result"]
            assert outcome["error"] is None
        elif outcome["state"] == "failed":
            assert outcome["error"]["message"]
            assert read_json(outcome["result_uri"])["state"] == "failed"
        else:
            assert outcome["error"]["message"]
            assert outcome["result_uri"] is None
    # Rejected inputs never reached the vendor: one submit per accepted input, nothing more.
    submits = [
        r
        for r in emulator.state.requests
        if r["method"] == "POST" and r["path"].endswith(SUBMIT_PATHS[vendor])
    ]
    assert len(submits) == sum(r is not None for r in references)
    logs = capfd.readouterr()
    if mode == "deferrable":
        assert "DocJobTrigger" in logs.out + logs.err  # one trigger waited for the batch
        assert (logs.out + logs.err).count("Waiting for") == 1


@pytest.mark.parametrize("mode", ["deferrable", "poke"])
def test_one_sensor_waits_for_mapped_docimprint_jobs(dags, emulator, results_uri, mode):
    dag_run, tis = run(dags, f"docjobs_list_docimprint_{mode}", [])
    assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}
    outcomes = xcoms(dag_run)[("wait", "return_value")]
    assert [o["state"] for o in outcomes] == ["succeeded", "failed", "succeeded"]
    assert outcomes[1]["error"]["code"] == "extract_failed"


def test_docimprint_focused_endpoint_jobs_land_their_answers(dags, emulator, results_uri):
    sources = [
        "https://example.com/lease.pdf",
        "https://example.com/fail_b.pdf",
        "https://example.com/lease.pdf",
    ]
    dag_run, tis = run(dags, "docjobs_list_docimprint_qa", sources)
    assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}
    outcomes = xcoms(dag_run)[("wait", "return_value")]
    assert [o["state"] for o in outcomes] == ["succeeded", "failed", "succeeded"]
    # One /v1/qa job per distinct source, the options beside the source; the same source submitted once.
    jobs = [job for (vendor, _), job in emulator.state.jobs.items() if vendor == "docimprint"]
    assert sorted(job.kind for job in jobs) == ["qa", "qa"]
    assert all(job.data["options"] == {"question": "Who signed the lease?"} for job in jobs)
    queries = {r["query"] for r in journal(emulator, "/docimprint/v1/qa", "POST")}
    assert queries == {"async=true"}
    landed = read_json(outcomes[0]["result_uri"])["result"]
    assert landed["endpoint"] == "qa"
    assert landed["result"]["question"] == "Who signed the lease?"
    assert outcomes[2]["result_uri"] == outcomes[0]["result_uri"]


def test_results_stay_out_of_xcom_events_and_logs(dags, emulator, results_uri, tmp_path, capfd):
    files = [pdf(tmp_path, "a.pdf"), pdf(tmp_path, "b.pdf")]
    dag_run, _ = run(dags, "docjobs_list_mindee_deferrable", files)
    assert dag_run.state == "success"
    outcomes = xcoms(dag_run)[("wait", "return_value")]
    # Document ids exist only in the vendor's results: they must show up nowhere but the store.
    markers = [read_json(o["result_uri"])["result"]["document"]["id"] for o in outcomes]
    logs = capfd.readouterr()
    text = logs.out + logs.err + json.dumps(list(xcoms(dag_run).values()), default=str)
    assert markers
    assert not any(marker in text for marker in markers)


def test_too_many_failures_fail_the_task_after_recording_every_outcome(
    dags, emulator, results_uri, tmp_path, capfd
):
    files = [pdf(tmp_path, "ok.pdf"), pdf(tmp_path, "fail.pdf")]
    _, tis = run(dags, "docjobs_list_strict", files)
    assert tis["wait"].state == "failed"
    manifest = next(Path(results_uri.removeprefix("file://")).rglob("wait.outcomes.json"))
    assert [o["state"] for o in json.loads(manifest.read_text())] == ["succeeded", "failed"]
    logs = capfd.readouterr()
    assert "1 of 2 items failed or were rejected" in logs.out + logs.err
    assert str(manifest) in logs.out + logs.err  # the error says where the outcomes are


def test_a_retried_batch_submit_pays_nothing_twice(dags, emulator, results_uri, tmp_path, capfd):
    files = [pdf(tmp_path, f"doc_{i}.pdf") for i in range(4)]
    dag_run, tis = run(dags, "docjobs_list_retried", files)
    assert dag_run.state == "success"
    assert tis["submit"].try_number == 2
    submits = [r for r in emulator.state.requests if r["path"].endswith("/predict_async")]
    assert len(submits) == 4  # the second try reused every reference
    # One true count in the second try's log: nothing was submitted again.
    logs = "".join(capfd.readouterr())
    assert "4 Mindee jobs earlier tries submitted: 4 reused, 0 submitted again" in logs
    assert "Mindee batch of 4: 4 jobs, 4 reused from earlier tries and 0 submitted now" in logs


def test_a_first_try_looks_up_no_document_in_the_task_state_store(
    dags, emulator, results_uri, tmp_path, monkeypatch
):
    """Each lookup is a round trip through the worker's supervisor (100-300 ms loaded): a first try has none."""
    from airflow.state.metastore import MetastoreBackend

    keys: list[str] = []
    real_get = MetastoreBackend.get
    monkeypatch.setattr(
        MetastoreBackend,
        "get",
        lambda self, scope, key, **kw: keys.append(key) or real_get(self, scope, key, **kw),
    )
    files = [pdf(tmp_path, f"doc_{i}.pdf") for i in range(4)]
    dag_run, _ = run(dags, "docjobs_list_mindee_poke", files)
    assert dag_run.state == "success"
    assert not [key for key in keys if key.startswith("docjobs_item_")], keys
    assert STARTED_KEY in keys  # it asked whether an earlier try had started (and none had)


def test_a_retry_submits_only_what_the_vendor_did_not_take(dags, emulator, results_uri, tmp_path):
    files = [pdf(tmp_path, f"doc_{i}.pdf") for i in range(4)]
    # The first upload meets three 503s in a row: the hook's three attempts are spent on that document.
    emulator.state.faults.append(Fault(vendor="mindee", path="/predict_async", status=503, times=3))
    dag_run, tis = run(dags, "docjobs_list_serial", files)
    assert dag_run.state == "success"
    assert tis["submit"].try_number == 2
    accepted = [r for r in emulator.state.requests if r["path"].endswith("/predict_async")]
    assert len(accepted) == 3 + 4  # three refused attempts, then each document accepted once


def test_duplicates_in_a_batch_are_submitted_once(dags, emulator, results_uri, tmp_path):
    one = pdf(tmp_path, "a.pdf")
    copy = tmp_path / "copy_of_a.pdf"
    copy.write_bytes(Path(one).read_bytes())
    dag_run, _ = run(dags, "docjobs_list_mindee_deferrable", [one, str(copy), one])
    assert dag_run.state == "success"
    references = xcoms(dag_run)[("submit", "return_value")]
    assert len(set(references)) == 1
    assert len(references) == 3
    assert len([r for r in emulator.state.requests if r["path"].endswith("/predict_async")]) == 1


def test_the_submit_records_the_order_the_vendor_took_the_jobs_in(dags, emulator, results_uri, tmp_path):
    """
    The first upload to arrive is held 0.5 s at the vendor before it takes it: the batch's record ranks
    that job last, whatever its place among the inputs (the deferring sensor polls them in this order).
    """
    emulator.state.faults.append(Fault(vendor="mindee", path="/predict_async", delay=0.5, times=1))
    dag_run, _ = run(
        dags, "docjobs_list_mindee_deferrable", [pdf(tmp_path, f"doc_{i}.pdf") for i in range(5)]
    )
    assert dag_run.state == "success"
    references = xcoms(dag_run)[("submit", "return_value")]
    (record,) = (tmp_path / "results").rglob("_submitted/*.json")
    ranks = [entry["accepted"] for entry in read_json(f"file://{record}")]
    assert sorted(ranks) == list(range(5))
    made = [
        key for vendor, key in emulator.state.jobs if vendor == "mindee" and any(key in r for r in references)
    ]
    assert len(made) == 5
    by_rank = sorted(range(5), key=ranks.__getitem__)
    # The held job is made 0.5 s after the others (those made within a millisecond may swap places).
    assert made[-1] in references[by_rank[-1]], (ranks, references, made)


def test_a_folder_is_a_batch_of_its_documents(dags, emulator, results_uri, tmp_path):
    inbox = tmp_path / "inbox"
    for name in ("b.pdf", "sub/c.pdf", "a.pdf", ".hidden/x.pdf"):
        pdf(inbox, name)
    dag_run, _ = run(dags, "docjobs_list_biros_deferrable", str(inbox) + "/")
    assert dag_run.state == "success"
    outcomes = xcoms(dag_run)[("wait", "return_value")]
    assert [Path(o["input"]).relative_to(inbox).as_posix() for o in outcomes] == [
        "a.pdf",
        "b.pdf",
        "sub/c.pdf",
    ]
    assert all(o["state"] == "succeeded" for o in outcomes)


def test_a_batch_killed_mid_submit_has_stored_every_document_the_vendor_took(
    airflow_db, emulator, results_uri, tmp_path
):
    """
    Try 1 runs in a process group of its own, SIGKILLed as it starts its third submit (one at a time):
    the vendor took two documents, and both references must already be in ``task_state_store``, all a
    retry on another worker has (``test_a_retried_batch_submit_pays_nothing_twice`` shows a retry reusing
    what is stored; ``dag.test()`` cannot retry a killed run: it deletes the run, and its store with it).
    The submits once ran ahead of the recording: neither reference was written when the worker died.
    """
    from airflow._shared.state import TaskScope
    from airflow.models import DagRun
    from airflow.state import get_state_backend

    files = [pdf(tmp_path, f"doc_{i}.pdf") for i in range(4)]
    script = (
        "import sys, importlib.util\n"
        "sys.path.insert(0, sys.argv[1].rpartition('/')[0])  # the bundle's folder, as Airflow has it\n"
        "spec = importlib.util.spec_from_file_location('dags', sys.argv[1])\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "module.DAGS['docjobs_list_killed'].test(run_conf={'files': sys.argv[2:]})\n"
    )
    try_1 = subprocess.run(
        [sys.executable, "-c", script, str(DAG_FILE), *files],
        env=os.environ | {"DOCJOBS_KILL_MID_BATCH": "1"},
        start_new_session=True,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert try_1.returncode == -signal.SIGKILL, try_1.stderr.decode()[-3000:]
    submits = [r for r in emulator.state.requests if r["path"].endswith("/predict_async")]
    assert len(submits) == 2  # the vendor took the first two documents, then the worker was gone

    (dag_run,) = DagRun.find(dag_id="docjobs_list_killed")
    scope = TaskScope(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id="submit", map_index=-1)
    keys = [ITEM_KEY.format(sha256=hashlib.sha256(Path(f).read_bytes()).hexdigest()) for f in files]
    stored = [get_state_backend().get(scope, key) is not None for key in keys]
    assert stored == [True, True, False, False]
