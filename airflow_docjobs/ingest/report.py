"""
A short text summary of the results database: row counts, then one line per document.

Each line shows the document's headline columns. ``make demo`` prints it after ``docjobs_nightly``; run it
yourself with::

    python -m airflow_docjobs.ingest.report [--conn-id docjobs_db] [--limit 20]

in an environment where the connection resolves (``AIRFLOW_CONN_<ID>``, or ``AIRFLOW_HOME`` for the
embedded SQLite file).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from airflow_docjobs.ingest.database import DEFAULT_CONN_ID, ResultsDatabase
from airflow_docjobs.ingest.tables import FIELDS_TABLE, RESULTS_TABLE

# The headline columns worth a glance, per vendor, as the summary prints them.
SHOWN = {
    "finovox": ("global_risk", "decision_status"),
    "mindee": ("total_amount", "total_net", "total_tax"),
    "docimprint": ("bundle_id", "manifest_sha256"),
    "biros": ("document_status", "revision_status"),
}
_COLUMNS = (
    "vendor",
    "analysis",
    "input_name",
    "state",
    "error_code",
    *dict.fromkeys(sum(SHOWN.values(), ())),
)


def summary(
    conn_id: str = DEFAULT_CONN_ID,
    *,
    results_table: str = RESULTS_TABLE,
    fields_table: str = FIELDS_TABLE,
    schema: str | None = None,
    limit: int = 20,
) -> str:
    """The summary as text: counts per table and per vendor, analysis and state, then ``limit`` documents."""
    database = ResultsDatabase(conn_id, results_table=results_table, fields_table=fields_table, schema=schema)
    hook, escape = database.hook, database.escape
    hook.log_sql = False  # a summary for people: no "Running statement" lines around it
    documents = hook.get_records(f"SELECT COUNT(*) FROM {database.results}")[0][0]
    fields = hook.get_records(f"SELECT COUNT(*) FROM {database.fields}")[0][0]
    lines = [f"{results_table}: {documents} rows, {fields_table}: {fields} rows"]
    kinds = ", ".join(map(escape, ("vendor", "analysis", "state")))
    for vendor, analysis, state, count in hook.get_records(
        f"SELECT {kinds}, COUNT(*) FROM {database.results} GROUP BY {kinds} ORDER BY {kinds}"
    ):
        lines.append(f"  {vendor:<10} {analysis:<22} {state:<9} {count}")
    rows = hook.get_records(
        f"SELECT {', '.join(map(escape, _COLUMNS))} FROM {database.results}"
        f" ORDER BY {', '.join(map(escape, ('vendor', 'analysis', 'input_name')))}"
    )
    if rows:
        lines.append("")
    for row in rows[:limit]:
        lines.append("  " + _document_line(dict(zip(_COLUMNS, row, strict=True))))
    if len(rows) > limit:
        lines.append(f"  ... and {len(rows) - limit} more")
    return "\n".join(lines)


def _document_line(row: dict[str, Any]) -> str:
    name = str(row["input_name"] or "?").rstrip("/").rsplit("/", 1)[-1]
    if row["state"] != "succeeded":
        return f"{row['vendor']:<10} {name:<36} {row['state']} [{row['error_code']}]"
    shown = []
    for column in SHOWN.get(row["vendor"], ()):
        value = row[column]
        if value is not None:
            shown.append(f"{column}={value[:12] + '...' if column == 'manifest_sha256' else value}")
    return f"{row['vendor']:<10} {name:<36} {' '.join(shown)}"


def main(argv: list[str] | None = None) -> None:
    """Print the summary from the command line (``--conn-id``, ``--schema``, ``--limit``)."""
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--conn-id", default=DEFAULT_CONN_ID)
    parser.add_argument("--schema", default=None)
    parser.add_argument("--limit", type=int, default=20)
    args = parser.parse_args(argv)
    # A command run where Airflow runs reads connections where Airflow keeps them: environment variables,
    # secrets backends and the metadata database. Outside a task, Airflow's SDK leaves the metadata database
    # out unless the process says it is a server process, as Airflow's own scheduler and triggerer do.
    os.environ.setdefault("_AIRFLOW_PROCESS_CONTEXT", "server")
    print(summary(args.conn_id, schema=args.schema, limit=args.limit))


if __name__ == "__main__":
    main()
