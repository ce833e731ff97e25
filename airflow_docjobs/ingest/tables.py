"""
The two tables results land in, their portable DDL, and how one document becomes one row.

``docjobs_results`` holds one row per document and analysis, keyed on (vendor, analysis, input_sha256);
``docjobs_fields`` one row per extracted field, keyed on the same three columns plus ``item``, the
field's position in its result. The DDL uses only types that SQLite, PostgreSQL and MySQL all accept
(``VARCHAR(n)`` for keys, since MySQL cannot index a ``TEXT``; ``DOUBLE PRECISION`` because PostgreSQL's
``REAL`` keeps only six digits of an amount) and ``CREATE TABLE IF NOT EXISTS``; on other databases,
create the tables yourself with the same columns.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_docjobs.exceptions import DocJobsInputError
from airflow_docjobs.ingest.vendors import HEADLINES, READERS, Field

RESULTS_TABLE = "docjobs_results"
FIELDS_TABLE = "docjobs_fields"
KEY = ("vendor", "analysis", "input_sha256")
FIELD_KEY = (*KEY, "item")
STATES = ("succeeded", "failed", "rejected")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

_KEY_COLUMNS = (("vendor", "VARCHAR(32)"), ("analysis", "VARCHAR(200)"), ("input_sha256", "VARCHAR(64)"))
RESULT_COLUMNS: tuple[tuple[str, str], ...] = (
    *_KEY_COLUMNS,
    ("input_name", "TEXT"),
    ("job_reference", "TEXT"),  # JSON; a Finovox retrieve token only as its SHA-256
    ("state", "VARCHAR(16)"),
    ("error_code", "VARCHAR(200)"),
    ("error_message", "TEXT"),
    ("finished_at", "VARCHAR(40)"),  # ISO 8601 UTC: sorts as it reads, on every database
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
    ("ingested_at", "VARCHAR(40)"),
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


def create_table_sql(
    table: str, columns: Sequence[tuple[str, str]], key: Sequence[str], escape: Callable[[str], str]
) -> str:
    """Portable DDL: the column types above, NOT NULL on the key, a primary key on it."""
    defined = [f"{escape(name)} {kind}{' NOT NULL' if name in _NOT_NULL else ''}" for name, kind in columns]
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
