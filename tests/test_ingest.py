"""
The ingest operator on SQLite and on a real PostgreSQL, fed with real vendor results: every job below ran
against the emulator and landed in a results store exactly as a list sensor lands it.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import TYPE_CHECKING

import pytest
from conftest import FAST_RETRIES, FIXTURES, MINDEE_PRODUCT, MINDEE_V2_MODEL, VENDORS
from pg import postgres_conn, postgres_server  # noqa: F401 - fixtures

from airflow_docjobs.exceptions import DocJobsInputError
from airflow_docjobs.hooks.biros import BirosHook
from airflow_docjobs.hooks.docimprint import DocimprintHook
from airflow_docjobs.hooks.finovox import FinovoxHook
from airflow_docjobs.hooks.inputs import content_sha256
from airflow_docjobs.hooks.mindee import MindeeHook
from airflow_docjobs.hooks.mindee_v2 import MindeeV2Hook
from airflow_docjobs.ingest import ResultsDatabase
from airflow_docjobs.operators.ingest import DocJobsIngestOperator
from airflow_docjobs.results import ResultsStore, job_key, landed_record, read_json

if TYPE_CHECKING:
    from pathlib import Path

CONN_ID = "docjobs_test_db"
BIROS = {"service_id": "svc-1"}
# kind: hook, the submit's and the job reference's parameters, the inputs of its batch and their states
KINDS = {
    "finovox": (
        FinovoxHook,
        {},
        {},
        [("ok_1.pdf", "succeeded"), ("fraud_2.pdf", "succeeded"), ("notes.txt", "rejected")],
    ),
    "finovox_case": (
        FinovoxHook,
        {"analysis": "case", "use_case": "rental", "analyse_type": ["decision", "share_link"]},
        {"analysis": "case"},
        [("case_ok/", "succeeded"), ("case_fail/", "failed"), ("case_empty/", "rejected")],
    ),
    "mindee": (
        MindeeHook,
        MINDEE_PRODUCT,
        MINDEE_PRODUCT,
        [
            ("ok_1.pdf", "succeeded"),
            ("ok_2.pdf", "succeeded"),
            ("fail_3.pdf", "failed"),
            ("gone.pdf", "rejected"),
        ],
    ),
    "mindee_v2": (
        MindeeV2Hook,
        MINDEE_V2_MODEL | {"confidence": True, "polygon": True},
        MINDEE_V2_MODEL,
        [("ok_1.pdf", "succeeded"), ("fail_2.pdf", "failed"), ("gone.pdf", "rejected")],
    ),
    "docimprint": (
        DocimprintHook,
        {},
        {},
        [("https://example.com/a.pdf", "succeeded"), ("https://example.com/fail_b.pdf", "failed")],
    ),
    "biros": (
        BirosHook,
        BIROS,
        BIROS,
        [("ok_1.pdf", "succeeded"), ("fail_2.pdf", "failed"), ("gone.pdf", "rejected")],
    ),
}
ANALYSIS = {
    "finovox": ("finovox", "document"),
    "finovox_case": ("finovox", "case"),
    "mindee": ("mindee", "mindee/invoices/v4"),
    "mindee_v2": ("mindee_v2", MINDEE_V2_MODEL["model_id"]),
    "docimprint": ("docimprint", "extract"),
    "biros": ("biros", "svc-1"),
}


def make_input(folder: Path, name: str) -> str:
    """A document with content of its own; ``gone.pdf`` is never written; ``*/`` is a case folder."""
    if name.startswith("https://") or name == "gone.pdf":
        return name if name.startswith("https://") else str(folder / name)
    if name.endswith("/"):
        case = folder / name.rstrip("/")
        case.mkdir(parents=True)
        if name != "case_empty/":
            for doc in ("id_card.pdf", "fail.pdf" if "fail" in name else "payslip.pdf"):
                (case / doc).write_bytes(
                    (FIXTURES / "invoice.pdf").read_bytes() + f"% {name}{doc}\n".encode()
                )
            (case / "applicant.json").write_text('{"applicants": []}')
        return str(case)
    path = folder / name
    path.write_bytes((FIXTURES / "invoice.pdf").read_bytes() + f"% {name}\n".encode())
    return str(path)


def run_batch(kind: str, folder: Path, store: ResultsStore) -> list[dict]:
    """Submit, wait and land a batch as a list sensor does; return its outcomes."""
    hook_class, params, reference_params, batch = KINDS[kind]
    folder.mkdir(parents=True)
    outcomes = []
    with hook_class() as hook:
        for name, _ in batch:
            item = make_input(folder, name)
            outcome = {"reference": None, "input": item, "sha256": content_sha256(item), "result_uri": None}
            try:
                outcome["reference"] = reference = hook.submit(item, **params)
            except DocJobsInputError as exc:
                outcomes.append(
                    outcome | {"state": "rejected", "error": {"code": "invalid_input", "message": str(exc)}}
                )
                continue
            job = hook.job_reference(reference, **reference_params)
            deadline = time.monotonic() + 10
            while not (status := hook.get_job_status(job)).terminal and time.monotonic() < deadline:
                time.sleep(0.05)
            record = landed_record(hook.vendor, hook.public_job(job), status)
            store.land(job, record)
            outcome |= {"state": record["state"], "error": record["error"]}
            if record["state"] == "succeeded":
                outcome["result_uri"] = store.uri(job_key(job))
            if kind == "docimprint":  # mapped docimprint submits record no input (see the DAG)
                outcome |= {"input": None, "sha256": None}
            outcomes.append(outcome)
    return outcomes


@pytest.fixture(scope="module")
def landed(emulator_server, tmp_path_factory):
    """Every kind's batch, run once for the module: ``{kind: outcomes}``."""
    emulator_server.state.reset()
    emulator_server.state.settings.update(
        {"processing_seconds": 0.0, "review_seconds": 0.0, "api_key": "emulator"}
    )
    root = tmp_path_factory.mktemp("landed")
    with pytest.MonkeyPatch.context() as patch:
        for vendor in VENDORS:
            patch.setenv(
                f"AIRFLOW_CONN_{vendor.upper()}_DEFAULT",
                emulator_server.connection_json(vendor, **FAST_RETRIES),
            )
        return {
            kind: run_batch(kind, root / kind, ResultsStore(f"file://{root}/results", kind, "dag", "run"))
            for kind in KINDS
        }


@pytest.fixture(params=["sqlite", "postgres"])
def database(request, tmp_path, monkeypatch) -> ResultsDatabase:
    """The results database behind ``CONN_ID``: a SQLite file, or a fresh database on a real PostgreSQL."""
    if request.param == "sqlite":
        conn = json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "warehouse.db")})
    else:
        conn = request.getfixturevalue("postgres_conn")
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", conn)
    return ResultsDatabase(CONN_ID)


def ingest(results, **kwargs) -> dict:
    return DocJobsIngestOperator(task_id="ingest", results=results, conn_id=CONN_ID, **kwargs).execute({})


def table(database: ResultsDatabase, which: str = "results") -> list[dict]:
    """Every row of a table as dicts, in key order."""
    name = database.results if which == "results" else database.fields
    order = "vendor, analysis, input_sha256" + (", item" if which == "fields" else "")
    with database.hook.get_conn() as conn:
        cursor = conn.cursor()
        cursor.execute(f"SELECT * FROM {name} ORDER BY {order}")
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def aware(value) -> datetime:
    """A timestamp column's value as an aware datetime: the driver's own, or parsed from ISO 8601 text."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    assert moment.tzinfo is not None, value
    return moment


def checksum(database: ResultsDatabase) -> str:
    return json.dumps([table(database), table(database, "fields")], default=str, sort_keys=True)


def docimprint_inputs() -> list[str]:
    return [name for name, _ in KINDS["docimprint"][3]]


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_batch_of_every_vendor_lands_one_row_per_document(database, landed, kind):
    outcomes = landed[kind]
    extra = {"inputs": docimprint_inputs()} if kind == "docimprint" else {}
    report = ingest(outcomes, **extra)
    rows = table(database)
    vendor, analysis = ANALYSIS[kind]
    assert report["documents"] == report["written"] == len(outcomes) == len(rows)
    assert {(r["vendor"], r["analysis"]) for r in rows} == {(vendor, analysis)}
    by_input = {r["input_name"]: r for r in rows}
    for (name, expected), outcome in zip(KINDS[kind][3], outcomes, strict=True):
        row = by_input[outcome["input"] or name]
        assert row["state"] == expected == outcome["state"]
        assert row["input_sha256"] == (outcome["sha256"] or content_sha256(name) or row["input_sha256"])
        if expected == "succeeded":
            landed_result = read_json(outcome["result_uri"])["result"]
            assert json.loads(row["result_json"]) == landed_result
            assert row["finished_at"]
            assert row["error_code"] is None
            assert row["result_uri"] == outcome["result_uri"]
        else:
            assert row["error_message"]
            assert row["result_json"] is None
    ok = next(r for r in rows if r["state"] == "succeeded")
    headline = {
        "finovox": lambda r: r["global_risk"] in ("low", "medium", "high"),
        "finovox_case": lambda r: r["decision_status"] == "approved",
        "mindee": lambda r: (
            isinstance(r["total_amount"], float) and r["total_amount"] > 0 and r["total_net"] > 0
        ),
        "mindee_v2": lambda r: (
            isinstance(r["total_amount"], float) and r["total_amount"] > r["total_net"] > 0
        ),
        "docimprint": lambda r: r["bundle_id"].startswith("ev_") and len(r["manifest_sha256"]) == 64,
        "biros": lambda r: r["document_status"] == "ACTIVE" and r["revision_status"],
    }[kind]
    assert headline(ok), ok
    fields = table(database, "fields")
    assert report["fields"] == len(fields)
    if kind != "docimprint":
        assert fields
        assert {f["input_sha256"] for f in fields} <= {
            r["input_sha256"] for r in rows if r["state"] == "succeeded"
        }


def test_fields_hold_predictions_entities_and_risk_signals(database, landed):
    ingest(landed["mindee"])
    ingest(landed["biros"])
    ingest(landed["finovox"])
    fields = {(f["vendor"], f["field_name"]): f for f in table(database, "fields")}
    total = fields[("mindee", "total_amount")]
    assert 0 < total["confidence"] <= 1
    assert total["page"] == 0
    assert float(total["field_value"]) > 0
    assert ("mindee", "line_items[0].description") in fields
    surname = fields[("biros", "surname_1")]
    assert surname["page"] == 0
    assert 0.9 < surname["confidence"] <= 1
    risk = fields[("finovox", "global_risk")]
    assert risk["field_value"] in ("low", "high")
    assert risk["confidence"] is None
    assert risk["page"] is None


def test_mindee_v2_fields_flatten_to_dotted_paths_with_confidence_labels_as_fractions(database, landed):
    ingest(landed["mindee_v2"])
    fields = {f["field_name"]: f for f in table(database, "fields")}
    assert fields["total_amount"]["confidence"] in (1.0, 0.75, 0.5, 0.25)  # Certain, High, Medium, Low
    assert fields["total_amount"]["page"] == 0
    assert float(fields["total_amount"]["field_value"]) > 0
    assert fields["supplier_address.city"]["field_value"] == "San Francisco"
    assert fields["locale.currency"]["field_value"] == "USD"
    assert "line_items[1].quantity" in fields
    assert "taxes[0].rate" in fields
    failed = next(r for r in table(database) if r["state"] == "failed")
    assert failed["error_code"] == "500-001"
    assert json.loads(failed["job_reference"]) == {"job_id": failed_reference(landed)} | MINDEE_V2_MODEL


def failed_reference(landed) -> str:
    return next(o["reference"] for o in landed["mindee_v2"] if o["state"] == "failed")


def test_no_finovox_token_is_stored_in_clear(database, landed):
    ingest(landed["finovox"])
    ingest(landed["finovox_case"])
    dump = checksum(database)
    tokens = [o["reference"] for kind in ("finovox", "finovox_case") for o in landed[kind] if o["reference"]]
    assert tokens
    assert not any(token in dump for token in tokens)
    failed = next(r for r in table(database) if r["state"] == "failed")
    assert set(json.loads(failed["job_reference"])) == {"retrieve_token_sha256", "analysis"}


def test_re_ingesting_changes_nothing(database, landed):
    outcomes = landed["mindee"]
    ingest(outcomes)
    before = checksum(database)
    again = ingest(outcomes)
    assert again["written"] == 0
    assert again["unchanged"] == len(outcomes)
    assert checksum(database) == before  # not even ingested_at moved


def test_single_results_ingest_with_or_without_their_input(database, landed):
    for kind in KINDS:
        outcome = next(o for o in landed[kind] if o["state"] == "succeeded")
        result = read_json(outcome["result_uri"])["result"]
        given = outcome["input"] or docimprint_inputs()[0]
        assert ingest(result, inputs=given)["written"] == 1
    rows = table(database)
    assert len(rows) == len(KINDS)
    # Vendor and analysis were read from each result's shape, as list mode reads them from the job.
    assert {(r["vendor"], r["analysis"]) for r in rows} == set(ANALYSIS.values())
    # Without inputs a single result is keyed by its own content: idempotent, one more row per kind.
    result = read_json(landed["mindee"][0]["result_uri"])["result"]
    first, second = ingest(result), ingest(result)
    assert (first["written"], second["unchanged"]) == (1, 1)
    assert len(table(database)) == len(KINDS) + 1


def test_a_single_result_and_its_batch_outcome_are_the_same_document(database, landed):
    outcome = landed["mindee"][0]
    result = read_json(outcome["result_uri"])["result"]
    ingest(result, inputs=outcome["input"])
    report = ingest([outcome])
    assert report["written"] == 1
    assert len(table(database)) == 1


def test_a_newer_result_replaces_an_older_one_never_the_reverse(database, landed, tmp_path):
    older, newer = (dict(o) for o in landed["mindee"][:2])
    newer_finished = "2026-11-24T02:00:00+00:00"
    for outcome, finished in ((older, "2026-11-24T01:00:00+00:00"), (newer, newer_finished)):
        record = read_json(outcome["result_uri"])
        record["finished_at"] = finished
        path = tmp_path / f"{finished[11:13]}.json"
        path.write_text(json.dumps(record))
        outcome |= {"result_uri": f"file://{path}", "sha256": "same document, two jobs", "input": "doc.pdf"}
    assert ingest([newer])["written"] == 1
    report = ingest([older])
    assert (report["kept_newer"], report["written"]) == (1, 0)
    assert aware(table(database)[0]["finished_at"]) == datetime.fromisoformat(newer_finished)
    assert ingest([older, newer])["written"] == 0  # the newer of a batch wins too: unchanged here
    ResultsDatabase(CONN_ID).hook.run(f"DELETE FROM {database.results}")
    assert ingest([older])["written"] == 1
    assert ingest([newer])["written"] == 1
    assert aware(table(database)[0]["finished_at"]) == datetime.fromisoformat(newer_finished)


def test_a_failure_never_replaces_a_success(database, landed):
    succeeded, failed = landed["biros"][0], dict(landed["biros"][1])
    failed |= {"input": succeeded["input"], "sha256": succeeded["sha256"]}
    ingest([succeeded])
    report = ingest([failed], vendor="biros", analysis="svc-1")
    assert report["kept_succeeded"] == 1
    assert table(database)[0]["state"] == "succeeded"


def test_rows_go_to_configured_tables_and_schema(database, landed):
    schema = None
    if database.hook.conn_type == "postgres":
        database.hook.run("CREATE SCHEMA warehouse")
        schema = "warehouse"
    ingest(landed["finovox"], results_table="risk_docs", fields_table="risk_fields", schema=schema)
    custom = ResultsDatabase(CONN_ID, results_table="risk_docs", fields_table="risk_fields", schema=schema)
    assert len(table(custom)) == 3
    assert table(custom, "fields")
