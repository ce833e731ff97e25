"""
``finished_at`` and ``ingested_at`` are native ``timestamptz`` columns on PostgreSQL and ISO 8601 text on
SQLite; tables created before, with text columns on PostgreSQL too, keep working.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import test_ingest
from pg import postgres_conn, postgres_server  # noqa: F401 - fixtures
from test_ingest import aware, ingest, table

from airflow_docjobs.ingest.tables import FIELD_COLUMNS, FIELD_KEY, KEY, RESULT_COLUMNS, create_table_sql
from airflow_docjobs.results import read_json

# The same databases and landed batches as test_ingest.py.
database, landed = test_ingest.database, test_ingest.landed
STAMPS = ("finished_at", "ingested_at")
MIGRATION = re.search(
    r"```sql\n(.*?)```", (Path(__file__).parents[1] / "docs" / "ingestion.md").read_text(), re.S
)[1]


def column_types(database) -> dict[str, str]:
    """The declared type of each timestamp column of the results table, as the database reports it."""
    if database.hook.conn_type == "postgres":
        rows = database.hook.get_records(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s",
            parameters=(database.results_table,),
        )
    else:
        rows = [row[1:3] for row in database.hook.get_records(f"PRAGMA table_info({database.results})")]
    return {name: kind.lower() for name, kind in rows if name in STAMPS}


def relanded(outcome: dict, folder, finished_at: str) -> dict:
    """The outcome with its landed record copied under another ``finished_at`` (another job, same document)."""
    record = read_json(outcome["result_uri"]) | {"finished_at": finished_at}
    path = folder / f"{finished_at[:19].replace(':', '')}.json"
    path.write_text(json.dumps(record))
    return dict(outcome, result_uri=f"file://{path}")


def check_ingest_and_upsert(database, landed, tmp_path) -> None:
    """Ingest, re-ingest unchanged, then replace a row by a newer result: timestamps stay instants."""
    outcomes = landed["mindee"]
    before = datetime.now(UTC).replace(microsecond=0)
    assert ingest(outcomes)["written"] == len(outcomes)
    rows = table(database)
    landed_at = {
        o["result_uri"]: read_json(o["result_uri"])["finished_at"] for o in outcomes if o["result_uri"]
    }
    for row in rows:
        assert before <= aware(row["ingested_at"]) <= datetime.now(UTC) + timedelta(seconds=1)
        if row["result_uri"]:
            assert aware(row["finished_at"]) == datetime.fromisoformat(landed_at[row["result_uri"]])
    again = ingest(outcomes)
    assert (again["written"], again["unchanged"]) == (0, len(outcomes))
    first = next(o for o in outcomes if o["state"] == "succeeded")
    later = aware(read_json(first["result_uri"])["finished_at"]) + timedelta(hours=3)
    # Written with another offset: later in time, yet earlier as text than the UTC one below.
    newer = relanded(first, tmp_path, later.astimezone(timezone(timedelta(hours=-5))).isoformat())
    assert ingest([newer])["written"] == 1
    row = next(r for r in table(database) if r["input_sha256"] == first["sha256"])
    assert aware(row["finished_at"]) == later
    older = relanded(first, tmp_path, (later - timedelta(hours=1)).isoformat())
    assert ingest([older])["kept_newer"] == 1


def test_timestamps_are_timestamptz_on_postgresql_and_text_on_sqlite(database, landed, tmp_path):
    database.ensure_tables()
    native = database.hook.conn_type == "postgres"
    expected = "timestamp with time zone" if native else "varchar(40)"
    assert column_types(database) == dict.fromkeys(STAMPS, expected)
    check_ingest_and_upsert(database, landed, tmp_path)
    if native:  # the driver's own aware datetimes, not text
        rows = table(database)
        assert all(isinstance(row["ingested_at"], datetime) for row in rows)
        assert all(isinstance(row["finished_at"], datetime) for row in rows if row["result_uri"])


def test_a_table_created_with_text_timestamps_still_ingests(database, landed, tmp_path):
    # The tables as releases before native timestamps created them, on every database.
    for name, columns, key in (
        (database.results, RESULT_COLUMNS, KEY),
        (database.fields, FIELD_COLUMNS, FIELD_KEY),
    ):
        old = [(column, "VARCHAR(40)" if column in STAMPS else kind) for column, kind in columns]
        database.hook.run(create_table_sql(name, old, key, database.escape))
    check_ingest_and_upsert(database, landed, tmp_path)
    assert column_types(database) == dict.fromkeys(
        STAMPS, "character varying" if database.hook.conn_type == "postgres" else "varchar(40)"
    )
    assert all(isinstance(row["ingested_at"], str) for row in table(database))
    if database.hook.conn_type != "postgres":
        return
    # The migration docs/ingestion.md gives, run as written: the columns become timestamptz, the instants
    # stay, and re-ingesting still writes nothing.
    before = [
        (row["input_sha256"], aware(row["finished_at"]) if row["finished_at"] else None)
        for row in table(database)
    ]
    database.hook.run(MIGRATION)
    assert column_types(database) == dict.fromkeys(STAMPS, "timestamp with time zone")
    after = table(database)
    assert [(row["input_sha256"], row["finished_at"]) for row in after] == before
    assert all(isinstance(row["ingested_at"], datetime) for row in after)
    again = ingest(landed["mindee"])  # one document has the newer result of check_ingest_and_upsert
    assert (again["written"], again["unchanged"], again["kept_newer"]) == (0, len(landed["mindee"]) - 1, 1)
