"""What the ingest operator refuses, and what it still does when part of its input is gone."""

from __future__ import annotations

import json
import sqlite3

import pytest
import test_ingest
from pg import postgres_conn, postgres_server  # noqa: F401 - fixtures
from test_ingest import ingest, table

from airflow_docjobs.exceptions import DocJobsInputError
from airflow_docjobs.ingest import IngestError, ResultMissingError
from airflow_docjobs.operators.ingest import DocJobsIngestOperator, results_asset

# The same databases and landed batches as test_ingest.py.
database, landed = test_ingest.database, test_ingest.landed


def test_a_result_missing_from_the_store_is_named_and_the_rest_ingested(database, landed, tmp_path):
    outcomes = [dict(o) for o in landed["mindee"]]
    gone = f"file://{tmp_path}/results/mindee/gone.json"
    outcomes[1]["result_uri"] = gone
    with pytest.raises(ResultMissingError) as raised:
        ingest(outcomes)
    assert gone in str(raised.value)
    assert "1 of 4 items not ingested, the other 3 were" in str(raised.value)
    assert sorted(r["state"] for r in table(database)) == ["failed", "rejected", "succeeded"]


def test_an_unreadable_result_fails_retryably(database, landed, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    outcomes = [dict(landed["biros"][0], result_uri=f"file://{broken}"), landed["biros"][1]]
    with pytest.raises(IngestError) as raised:
        ingest(outcomes, vendor="biros", analysis="svc-1")
    assert not isinstance(raised.value, ResultMissingError)
    assert str(broken) in str(raised.value)
    assert [r["state"] for r in table(database)] == ["failed"]


@pytest.mark.parametrize(
    ("conn", "message"),
    [
        (None, "connection 'nowhere' is not defined"),
        ({"conn_type": "mindee", "password": "k3y-not-shown"}, "is of type 'mindee', not a SQL database"),
    ],
)
def test_a_connection_that_is_not_a_sql_database_fails_before_any_write(
    landed, monkeypatch, tmp_path, conn, message
):
    if conn is not None:
        monkeypatch.setenv("AIRFLOW_CONN_NOWHERE", json.dumps(conn))
    home = tmp_path / "home"
    monkeypatch.setenv("AIRFLOW_HOME", str(home))
    outcomes = [dict(landed["mindee"][0], result_uri=f"file://{tmp_path}/never-read.json")]
    operator = DocJobsIngestOperator(task_id="ingest", results=outcomes, conn_id="nowhere")
    with pytest.raises(DocJobsInputError, match=message) as raised:
        operator.execute({})
    assert "k3y-not-shown" not in str(raised.value)
    assert not home.exists()  # and no embedded database was made in its place


def test_the_default_connection_is_an_embedded_sqlite_file(landed, monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("AIRFLOW_CONN_DOCJOBS_DB", raising=False)
    report = DocJobsIngestOperator(task_id="ingest", results=landed["finovox"]).execute({})
    assert report["written"] == 3
    with sqlite3.connect(tmp_path / "docjobs" / "docjobs.db") as db:
        assert db.execute("SELECT COUNT(*) FROM docjobs_results").fetchone() == (3,)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"analysis": "invoices"}, "'invoices', but item 0's job says 'mindee/invoices/v4'"),
        ({"vendor": "finovox"}, "'finovox', but item 0 is a mindee result"),
        ({"vendor": "acme"}, "unknown vendor 'acme'"),
        ({"results_table": "results; DROP TABLE x"}, "plain SQL identifier"),
        ({"inputs": ["a.pdf"]}, "1 inputs for 4 results"),
    ],
)
def test_parameters_that_contradict_the_results_fail_before_any_write(database, landed, kwargs, message):
    with pytest.raises(DocJobsInputError, match=message):
        ingest(landed["mindee"], **kwargs)
    database.ensure_tables()
    assert table(database) == []


def test_items_nothing_identifies_need_vendor_and_analysis(database, landed):
    failed = [o for o in landed["mindee"] if o["state"] != "succeeded"]
    with pytest.raises(DocJobsInputError, match="pass vendor= and analysis="):
        ingest(failed)
    report = ingest(failed, vendor="mindee", analysis="mindee/invoices/v4")
    assert (report["failed"], report["rejected"], report["written"]) == (1, 1, 2)


@pytest.mark.parametrize("results", ["not a result", 42])
def test_results_must_be_what_a_sensor_returns(database, results):
    with pytest.raises(DocJobsInputError, match="expected a sensor's result or outcomes"):
        ingest(results)


def test_nothing_to_ingest_is_not_an_error(database):
    assert ingest([])["documents"] == 0
    assert ingest(None)["documents"] == 0


def test_the_operator_updates_the_results_table_asset():
    operator = DocJobsIngestOperator(task_id="ingest", results=[], schema="warehouse")
    assert operator.outlets == [results_asset(schema="warehouse")]
    assert results_asset().uri == "docjobs://tables/docjobs_results"


def test_rendered_outcomes_have_their_references_masked(landed, monkeypatch):
    masked = []
    monkeypatch.setattr("airflow_docjobs.operators.ingest.mask_secret", masked.append)
    operator = DocJobsIngestOperator(task_id="ingest", results=iter(landed["finovox"]))
    operator.render_template_fields(context={})
    assert operator.results == landed["finovox"]  # a lazy sequence is read once, into a list
    assert masked == [o["reference"] for o in landed["finovox"] if o["reference"]]
