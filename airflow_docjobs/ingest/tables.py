"""
The two tables results land in, their portable DDL, and how one document becomes one row.

``docjobs_results`` holds one row per document and analysis, keyed on (vendor, analysis, input_sha256);
``docjobs_fields`` one row per extracted field, keyed on the same three columns plus ``item``, the
field's position in its result. The DDL uses only types that SQLite, PostgreSQL and MySQL all accept
(``VARCHAR(n)`` for keys, since MySQL cannot index a ``TEXT``; ``DOUBLE PRECISION`` because PostgreSQL's
``REAL`` keeps only six digits of an amount) and ``CREATE TABLE IF NOT EXISTS``; on other databases,
create the tables yourself with the same columns.

The timestamps (``finished_at``, ``ingested_at``) are the one exception: a native ``timestamptz`` on
PostgreSQL (SQLAlchemy's ``DateTime(timezone=True)`` as the connection's dialect spells it), ISO 8601 UTC
text elsewhere. Either way they are written as ISO 8601 text with an offset, which both column types
accept, and compared as instants (:func:`instant`), so tables created with text columns keep working.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from airflow_docjobs.exceptions import DocJobsInputError
from airflow_docjobs.ingest.vendors import HEADLINES, READERS, Field

RESULTS_TABLE = "docjobs_results"
FIELDS_TABLE = "docjobs_fields"
KEY = ("vendor", "analysis", "input_sha256")
FIELD_KEY = (*KEY, "item")
STATES = ("succeeded", "failed", "rejected")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# Timestamps where no native column is used: ISO 8601 UTC text, which sorts as it reads.
TEXT_TIMESTAMP = "VARCHAR(40)"
TIMESTAMPS = ("finished_at", "ingested_at")
# SQLAlchemy dialects whose zone-aware timestamp column we create: the ones where it is tested and where
# ISO 8601 text with an offset binds to it. (SQL Server's DATETIMEOFFSET, for one, needs a pyodbc output
# converter to be read back; SQLite and MySQL have no zone-aware type.)
NATIVE_TIMESTAMPS = frozenset({"postgresql"})

_KEY_COLUMNS = (("vendor", "VARCHAR(32)"), ("analysis", "VARCHAR(200)"), ("input_sha256", "VARCHAR(64)"))
RESULT_COLUMNS: tuple[tuple[str, str], ...] = (
    *_KEY_COLUMNS,
    ("input_name", "TEXT"),
    ("job_reference", "TEXT"),  # JSON; a Finovox retrieve token only as its SHA-256
    ("state", "VARCHAR(16)"),
    ("error_code", "VARCHAR(200)"),
    ("error_message", "TEXT"),
    ("finished_at", TEXT_TIMESTAMP),  # or a native timestamp: see timestamp_type
    ("global_risk", "VARCHAR(32)"),
    ("decision_status", "VARCHAR(32)"),
    ("total_amount", "DOUBLE PRECISION"),
    ("total_net", "DOUBLE PRECISION"),
    ("total_tax", "DOUBLE PRECISION"),
    ("bundle_id", "VARCHAR(200)"),
    ("manifest_sha256", "VARCHAR(64)"),
    ("document_status", "VARCHAR(32)"),
    ("revision_status", "VARCHAR(32)"),
    ("result_uri", "TEXT"),
    ("result_json", "TEXT"),
    ("row_sha256", "VARCHAR(64)"),  # the row's content, to leave an unchanged row untouched
    ("ingested_at", TEXT_TIMESTAMP),
)
FIELD_COLUMNS: tuple[tuple[str, str], ...] = (
    *_KEY_COLUMNS,
    ("item", "INTEGER"),
    ("page", "INTEGER"),
    ("field_name", "VARCHAR(255)"),
    ("field_value", "TEXT"),
    ("confidence", "DOUBLE PRECISION"),
)
_NOT_NULL = frozenset({*FIELD_KEY, "state", "field_name"})


def check_identifier(name: Any, what: str, conn_id: str | None = None) -> str:
    """A table or schema name, refused unless it is a plain identifier (names are templated parameters)."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise DocJobsInputError(
            f"{what} must be a plain SQL identifier (letters, digits, _), got {name!r}", conn_id=conn_id
        )
    return name


def timestamp_type(dialect_name: str) -> str:
    """
    The timestamp columns' type on a database, by its SQLAlchemy dialect name (the hook's ``dialect_name``).

    ``TIMESTAMP WITH TIME ZONE`` on PostgreSQL, as SQLAlchemy compiles ``DateTime(timezone=True)`` there;
    :data:`TEXT_TIMESTAMP` on every other database.
    """
    if dialect_name not in NATIVE_TIMESTAMPS:
        return TEXT_TIMESTAMP
    from sqlalchemy import DateTime
    from sqlalchemy.dialects import registry

    return str(DateTime(timezone=True).compile(dialect=registry.load(dialect_name)()))


def instant(value: datetime | str | None) -> datetime | None:
    """
    A timestamp as an aware datetime, from either column type: the driver's datetime or ISO 8601 text.

    Text compares wrongly across offsets (``10:00-05:00`` is after ``12:00+00:00``); instants do not. A
    value without an offset is UTC, as everything this package writes is.
    """
    if value is None or value == "":
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def create_table_sql(
    table: str,
    columns: Sequence[tuple[str, str]],
    key: Sequence[str],
    escape: Callable[[str], str],
    timestamp: str = TEXT_TIMESTAMP,
) -> str:
    """Portable DDL: the column types above (``timestamp`` for the timestamps), NOT NULL and a primary key on the key."""
    kinds = [(name, timestamp if name in TIMESTAMPS else kind) for name, kind in columns]
    defined = [f"{escape(name)} {kind}{' NOT NULL' if name in _NOT_NULL else ''}" for name, kind in kinds]
    defined.append(f"PRIMARY KEY ({', '.join(map(escape, key))})")
    return f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(defined)})"


def text_sha256(text: str) -> str:
    """The SHA-256 hex digest of a text's UTF-8 bytes."""
    return hashlib.sha256(text.encode()).hexdigest()


def document_key(sha256: str | None, input_name: str | None) -> str | None:
    """
    The ``input_sha256`` of a document: its content's SHA-256 (``content_sha256``).

    For an input whose content could not be read (a missing file), the SHA-256 of its name, so it still gets
    one row.
    """
    if sha256:
        return sha256
    return text_sha256(input_name) if input_name else None


@dataclass
class DocumentRow:
    """One document's row of ``docjobs_results`` (``values``) and its rows of ``docjobs_fields``."""

    values: dict[str, Any]
    fields: list[Field] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, str]:
        """The row's key: (vendor, analysis, input SHA-256)."""
        return (self.values["vendor"], self.values["analysis"], self.values["input_sha256"])

    def result_row(self, ingested_at: str) -> tuple[Any, ...]:
        """The row's values in ``RESULT_COLUMNS`` order, stamped with ``ingested_at``."""
        return tuple(
            ingested_at if name == "ingested_at" else self.values[name] for name, _ in RESULT_COLUMNS
        )

    def field_rows(self) -> list[tuple[Any, ...]]:
        """The ``docjobs_fields`` rows: the key, then item number, page, name, value and confidence."""
        return [
            (*self.key, item, f.page, f.name, f.value, f.confidence) for item, f in enumerate(self.fields)
        ]


def document_row(
    *,
    vendor: str,
    analysis: str,
    input_sha256: str,
    input_name: str | None,
    state: str,
    job: Mapping[str, Any] | None = None,
    error: Mapping[str, Any] | None = None,
    finished_at: str | None = None,
    result: Any = None,
    result_uri: str | None = None,
) -> DocumentRow:
    """Build a document's rows: headline columns and fields read by the vendor's reader."""
    reader = READERS[vendor]
    readable = state == "succeeded" and isinstance(result, Mapping)
    headlines = reader.headlines(analysis, result) if readable else {}
    error = error or {}
    values: dict[str, Any] = {
        "vendor": vendor,
        "analysis": analysis,
        "input_sha256": input_sha256,
        "input_name": input_name,
        "job_reference": _json(job) if job else None,
        "state": state,
        "error_code": _short(error.get("code"), 200),
        "error_message": None if error.get("message") is None else str(error["message"]),
        "finished_at": finished_at,
        **{name: headlines.get(name) for name in HEADLINES},
        "result_uri": result_uri,
        "result_json": None if result is None else _json(result),
    }
    values["row_sha256"] = text_sha256(_json(values))
    values["ingested_at"] = None
    return DocumentRow(values, list(reader.fields(analysis, result)) if readable else [])


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _short(value: Any, size: int) -> str | None:
    return None if value is None else str(value)[:size]
