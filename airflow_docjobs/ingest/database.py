"""
The results database: any common-sql connection (SQLite, PostgreSQL, MySQL...).

It is written through the hook's own dialect.

Upserts are the dialect's (``generate_replace_sql``: ``REPLACE INTO`` on SQLite and MySQL, ``INSERT ...
ON CONFLICT DO UPDATE`` on PostgreSQL, ``MERGE`` on SQL Server), never SQL written per database. One
ingest is one transaction: a document's result row and its field rows change together or not at all.
"""

from __future__ import annotations

import os
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_docjobs.exceptions import DocJobsInputError
from airflow_docjobs.ingest.tables import (
    FIELD_COLUMNS,
    FIELD_KEY,
    FIELDS_TABLE,
    KEY,
    RESULT_COLUMNS,
    RESULTS_TABLE,
    DocumentRow,
    check_identifier,
    create_table_sql,
    instant,
    timestamp_type,
)
from airflow_docjobs.results import now_iso

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

    from airflow.providers.common.sql.hooks.sql import DbApiHook

DEFAULT_CONN_ID = "docjobs_db"
# Placeholders in one IN (...) list: far below every driver's limit (SQLite's is 32766).
LOOKUP_CHUNK = 500


def embedded_database_path() -> Path:
    """Where ``docjobs_db`` lives when no connection of that id is defined: ``$AIRFLOW_HOME/docjobs/docjobs.db``."""
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return Path(home).resolve() / "docjobs" / "docjobs.db"


def sql_hook(conn_id: str) -> DbApiHook:
    """
    The common-sql hook of a connection.

    Raises a clear ``DocJobsInputError`` for an unknown connection or one that is not a SQL database.
    ``docjobs_db``, when not defined, is the embedded SQLite database.
    """
    from airflow.providers.common.compat.sdk import AirflowException, AirflowNotFoundException, BaseHook
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    if not isinstance(conn_id, str) or not conn_id.strip():
        raise DocJobsInputError(f"expected a connection id, got {conn_id!r}")
    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException as exc:
        if conn_id == DEFAULT_CONN_ID:
            return _embedded_sqlite(embedded_database_path())
        raise DocJobsInputError(
            f"connection {conn_id!r} is not defined: define a common-sql connection (sqlite, postgres, "
            f"mysql...) under that id, or leave {DEFAULT_CONN_ID!r} undefined for the embedded SQLite file",
            conn_id=conn_id,
        ) from exc
    try:
        hook = conn.get_hook()  # type: ignore[no-untyped-call]  # Airflow leaves Connection.get_hook unannotated
    except (AirflowException, ImportError) as exc:
        raise DocJobsInputError(
            f"connection {conn_id!r} of type {conn.conn_type!r} has no hook installed: {exc}", conn_id=conn_id
        ) from exc
    if not isinstance(hook, DbApiHook):
        raise DocJobsInputError(
            f"connection {conn_id!r} is of type {conn.conn_type!r}, not a SQL database: give a common-sql "
            "connection (sqlite, postgres, mysql...)",
            conn_id=conn_id,
        )
    return hook


def _embedded_sqlite(path: Path) -> DbApiHook:
    from airflow.providers.common.compat.sdk import Connection
    from airflow.providers.sqlite.hooks.sqlite import SqliteHook

    class EmbeddedSqliteHook(SqliteHook):
        """SqliteHook on a file, without a connection to look up (it reads its own by id otherwise)."""

        def get_connection(self, conn_id: str | None = None) -> Any:
            return self.connection

    path.parent.mkdir(parents=True, exist_ok=True)
    connection = Connection(conn_id=DEFAULT_CONN_ID, conn_type="sqlite", host=str(path))
    return EmbeddedSqliteHook(sqlite_conn_id=DEFAULT_CONN_ID, connection=connection)  # type: ignore[no-untyped-call]  # SqliteHook.__init__ is unannotated


@dataclass
class WriteReport:
    """What one write did: rows written, left as they were (same content, or a newer or better row kept)."""

    written: int = 0
    unchanged: int = 0
    kept_newer: int = 0
    kept_succeeded: int = 0
    fields: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts as a dict, keyed by field name."""
        return asdict(self)


class ResultsDatabase:
    """
    The results and fields tables behind one common-sql connection.

    :param conn_id: a common-sql connection; ``docjobs_db`` falls back to the embedded SQLite file
        (:func:`embedded_database_path`) when no connection of that id is defined.
    :param results_table: the one-row-per-document table.
    :param fields_table: the one-row-per-field table.
    :param schema: the schema both tables live in (it must exist); the connection's default when ``None``.
    """

    def __init__(
        self,
        conn_id: str = DEFAULT_CONN_ID,
        *,
        results_table: str = RESULTS_TABLE,
        fields_table: str = FIELDS_TABLE,
        schema: str | None = None,
    ) -> None:
        self.conn_id = conn_id
        self.results_table = check_identifier(results_table, "results_table", conn_id)
        self.fields_table = check_identifier(fields_table, "fields_table", conn_id)
        self.schema = None if schema in (None, "") else check_identifier(schema, "schema", conn_id)

    @cached_property
    def hook(self) -> DbApiHook:
        """The connection's common-sql hook, built on first use."""
        return sql_hook(self.conn_id)

    def escape(self, word: str) -> str:
        """An identifier as the connection's dialect quotes it (only when it must)."""
        return self.hook.dialect.escape_word(word)

    def _table(self, name: str) -> str:
        return ".".join(self.escape(part) for part in (self.schema, name) if part)

    @property
    def results(self) -> str:
        """The results table's qualified, escaped name."""
        return self._table(self.results_table)

    @property
    def fields(self) -> str:
        """The fields table's qualified, escaped name."""
        return self._table(self.fields_table)

    def _where_key(self) -> str:
        return " AND ".join(f"{self.escape(c)} = {self.hook.placeholder}" for c in KEY)

    @contextmanager
    def _cursor(self) -> Iterator[tuple[Any, Any]]:
        # Closing without a commit rolls back, on every DB-API driver.
        with closing(self.hook.get_conn()) as conn, closing(conn.cursor()) as cursor:
            yield conn, cursor

    def ensure_tables(self) -> None:
        """Create both tables when missing (an existing table is left as it is, text timestamps too)."""
        escape, timestamp = self.escape, timestamp_type(self.hook.dialect_name)
        statements = [
            create_table_sql(self.results, RESULT_COLUMNS, KEY, escape, timestamp),
            create_table_sql(self.fields, FIELD_COLUMNS, FIELD_KEY, escape),
        ]
        for attempt in (1, 2):
            with self._cursor() as (conn, cursor):
                try:
                    for statement in statements:
                        cursor.execute(statement)
                    conn.commit()
                    return
                # Two tasks creating the tables at once: PostgreSQL then reports a duplicate in its catalog
                # even with IF NOT EXISTS. The second attempt finds the tables; a real problem fails twice.
                except Exception:
                    conn.rollback()
                    if attempt == 2:
                        raise

    def known(self, vendor: str, analysis: str, keys: Iterable[str | None]) -> dict[str, str]:
        """The state (``succeeded``, ``failed``, ``rejected``) of each of ``keys`` already in the table."""
        with self._cursor() as (_, cursor):
            found = self._lookup(cursor, [(vendor, analysis, key) for key in keys])
        return {key[2]: row["state"] for key, row in found.items()}

    def _lookup(
        self, cursor: Any, keys: Sequence[tuple[str, str, str | None]]
    ) -> dict[tuple[str, str, str], dict[str, Any]]:
        columns = ("input_sha256", "state", "finished_at", "row_sha256")
        by_kind: dict[tuple[str, str], list[str | None]] = {}
        for vendor, analysis, key in dict.fromkeys(keys):
            by_kind.setdefault((vendor, analysis), []).append(key)
        p, escape, found = self.hook.placeholder, self.escape, {}
        for (vendor, analysis), wanted in by_kind.items():
            for start in range(0, len(wanted), LOOKUP_CHUNK):
                chunk = wanted[start : start + LOOKUP_CHUNK]
                cursor.execute(
                    f"SELECT {', '.join(map(escape, columns))} FROM {self.results}"
                    f" WHERE {escape('vendor')} = {p} AND {escape('analysis')} = {p}"
                    f" AND {escape('input_sha256')} IN ({', '.join([p] * len(chunk))})",
                    (vendor, analysis, *chunk),
                )
                for row in cursor.fetchall():
                    found[(vendor, analysis, row[0])] = dict(zip(columns, row, strict=True))
        return found

    def write(self, rows: Sequence[DocumentRow]) -> WriteReport:
        """
        Upsert documents and replace their fields, in one transaction.

        A row is left as it is when its content is the same (re-ingesting changes nothing, not even
        ``ingested_at``), when the table holds a newer result (``finished_at``), or when the table holds a
        success and the new row is not one (a failed re-run never erases a paid-for result).
        """
        report = WriteReport()
        latest: dict[tuple[str, str, str], DocumentRow] = {}
        for row in rows:  # the same document twice in one batch: one of them, by the same rules
            kept = latest.get(row.key)
            if kept is None or _verdict(row.values, kept.values) is None:
                latest[row.key] = row
        with self._cursor() as (conn, cursor):
            existing = self._lookup(cursor, list(latest))
            fresh = []
            for key, row in latest.items():
                verdict = _verdict(row.values, existing.get(key))
                if verdict is None:
                    fresh.append(row)
                else:
                    setattr(report, verdict, getattr(report, verdict) + 1)
            if fresh:
                self._upsert(cursor, fresh, report)
            conn.commit()
        return report

    def _upsert(self, cursor: Any, rows: list[DocumentRow], report: WriteReport) -> None:
        dialect, ingested_at = self.hook.dialect, now_iso()
        # A newer result may have fewer fields: a document's old field rows go before its new ones come.
        cursor.executemany(f"DELETE FROM {self.fields} WHERE {self._where_key()}", [row.key for row in rows])
        names = [name for name, _ in RESULT_COLUMNS]
        upsert = dialect.generate_replace_sql(self.results, names, names, replace_index=list(KEY))
        cursor.executemany(upsert, [row.result_row(ingested_at) for row in rows])
        field_rows = [field for row in rows for field in row.field_rows()]
        if field_rows:
            names = [name for name, _ in FIELD_COLUMNS]
            upsert = dialect.generate_replace_sql(self.fields, names, names, replace_index=list(FIELD_KEY))
            cursor.executemany(upsert, field_rows)
        report.written += len(rows)
        report.fields += len(field_rows)


def _verdict(new: Mapping[str, Any], old: Mapping[str, Any] | None) -> str | None:
    """``None`` to write ``new`` over ``old``, else the ``WriteReport`` counter that says why not."""
    if old is None:
        return None
    if new["row_sha256"] == old["row_sha256"]:
        return "unchanged"
    if old["state"] == "succeeded" and new["state"] != "succeeded":
        return "kept_succeeded"
    new_finished, old_finished = instant(new["finished_at"]), instant(old["finished_at"])
    if new_finished and old_finished and new_finished < old_finished:
        return "kept_newer"
    return None
