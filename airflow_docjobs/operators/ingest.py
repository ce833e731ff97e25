"""Ingest what a sensor returned into a SQL database: one row per document, one per field, idempotently."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow.providers.common.compat.sdk import Asset, BaseOperator, mask_secret

from airflow_docjobs.exceptions import DocJobsInputError
from airflow_docjobs.hooks.inputs import content_sha256
from airflow_docjobs.ingest.database import DEFAULT_CONN_ID, ResultsDatabase, WriteReport
from airflow_docjobs.ingest.errors import IngestError, ResultMissingError
from airflow_docjobs.ingest.tables import (
    FIELDS_TABLE,
    RESULTS_TABLE,
    STATES,
    DocumentRow,
    document_key,
    document_row,
    text_sha256,
)
from airflow_docjobs.ingest.vendors import READERS, infer_vendor, vendor_id
from airflow_docjobs.lineage import table_datasets
from airflow_docjobs.results import read_json

# Problems named in the error message; the log has every one.
SHOWN_PROBLEMS = 10


def results_asset(results_table: str = RESULTS_TABLE, schema: str | None = None) -> Asset:
    """
    The Asset an ingest updates: ``docjobs://tables/[schema.]docjobs_results``.

    Schedule a DAG on it (``schedule=[results_asset()]``) to run after every ingest. It names the table, not
    the database, because the connection id may be a template that only a run resolves.
    """
    return Asset(uri=f"docjobs://tables/{f'{schema}.' if schema else ''}{results_table}")


@dataclass
class _Item:
    """One result or outcome, normalized: what its row needs, before vendor and analysis are settled."""

    index: int
    state: str
    input_name: str | None
    sha256: str | None
    vendor: str | None = None
    analysis: str | None = None
    job: Mapping[str, Any] | None = None
    reference: str | None = None
    error: Mapping[str, Any] | None = None
    finished_at: str | None = None
    result: Any = None
    result_uri: str | None = None


class DocJobsIngestOperator(BaseOperator):
    """
    Write sensor results to two tables of any common-sql database, idempotently.

    The tables: ``docjobs_results``, one row per document (vendor, analysis, input name and SHA-256, job
    reference with secret tokens hashed, state, error, ``finished_at``, headline columns, the raw result
    JSON), and ``docjobs_fields``, one row per extracted field (Mindee predictions, myBiros entities, Finovox
    risk signals).

    ``results`` is what a sensor returns, unchanged: a list sensor's outcomes (results are read from the
    results store by their ``result_uri``; failed and rejected items are written too, with their error),
    a single result JSON, or a list of single results (a mapped sensor's). Rows are keyed on (vendor,
    analysis, input SHA-256) and upserted through the connection's own dialect: re-ingesting changes
    nothing, a newer result (``finished_at``) replaces an older one, never the reverse, and a failure
    never replaces a success. Tables are created when missing, with ``finished_at`` and ``ingested_at`` as
    ``timestamptz`` on PostgreSQL and ISO 8601 text elsewhere; an existing table is used as it is (text
    timestamps too: see "Timestamps" in docs/ingestion.md). A result missing from the store fails the task
    with its URI once every other item is written.

    Vendor and analysis of a row come from its landed record (the job reference: Finovox ``analysis``,
    Mindee ``account/product/version``, myBiros ``service_id``, docimprint always ``extract``). Items with
    no record (failed and rejected outcomes, single results) take the ``vendor`` and ``analysis``
    parameters, else those of the other items of the list, else (single results) their result's shape.
    A single result's input SHA-256 comes from ``inputs``; without it, the row is keyed on the result
    JSON's own SHA-256, which re-ingests idempotently but does not identify the document.

    :param results: a sensor's output (``wait.output``): outcomes, a result, or a list of results.
    :param conn_id: a common-sql connection (sqlite, postgres, mysql...). ``docjobs_db``, when no such
        connection is defined, is the embedded SQLite file ``$AIRFLOW_HOME/docjobs/docjobs.db``.
    :param vendor: ``finovox``, ``mindee``, ``docimprint`` or ``biros``, for items without a record.
    :param analysis: the analysis kind for items without a record (``document``, ``case``,
        ``mindee/invoices/v4``, a myBiros service id, ``extract``); it must agree with the records.
    :param inputs: what was submitted, where the results do not say it: a path, URI or URL (hashed with
        ``content_sha256``) or ``{"input": ..., "sha256": ...}``; one for a single result, else a list
        aligned with ``results`` (``None`` where the outcome says it). Mapped docimprint submits need it.
    :param results_table: the results table's name.
    :param fields_table: the fields table's name.
    :param schema: the tables' schema (it must exist); the connection's default when ``None``.
    """

    template_fields: Sequence[str] = (
        "results",
        "conn_id",
        "vendor",
        "analysis",
        "inputs",
        "results_table",
        "fields_table",
        "schema",
    )
    ui_color = "#e3f0d9"

    def __init__(
        self,
        *,
        results: Any,
        conn_id: str = DEFAULT_CONN_ID,
        vendor: str | None = None,
        analysis: str | None = None,
        inputs: Any = None,
        results_table: str = RESULTS_TABLE,
        fields_table: str = FIELDS_TABLE,
        schema: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("outlets", [results_asset(results_table, schema)])
        super().__init__(**kwargs)
        self.results = results
        self.conn_id = conn_id
        self.vendor = vendor
        self.analysis = analysis
        self.inputs = inputs
        self.results_table = results_table
        self.fields_table = fields_table
        self.schema = schema

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Render the fields, read a lazy XCom sequence once and mask the references it holds."""
        super().render_template_fields(context, jinja_env)
        results = self.results
        if not isinstance(results, (Mapping, str, bytes)) and isinstance(results, Iterable):
            self.results = results = list(results)  # a lazy XCom sequence is read once, here
        # Outcomes carry the vendors' references, Finovox's secret retrieve tokens among them: mask them
        # before Airflow stores the rendered fields for the UI (the sensor masked them in its own process).
        entries = [results] if isinstance(results, Mapping) else results if isinstance(results, list) else []
        for entry in entries:
            if isinstance(entry, Mapping) and isinstance(entry.get("reference"), str):
                mask_secret(entry["reference"])

    def execute(self, context: Any) -> dict[str, Any]:
        """Write the results' rows to the tables; return the counts of documents, writes and states."""
        database = ResultsDatabase(
            self.conn_id, results_table=self.results_table, fields_table=self.fields_table, schema=self.schema
        )
        database.hook  # noqa: B018 - an unknown or non-SQL connection fails here, before anything is read
        entries, inputs = self._entries()
        problems: list[tuple[str, bool]] = []  # (what went wrong, whether only a missing file)
        items = [
            item for i, entry in enumerate(entries) if (item := self._item(i, entry, inputs[i], problems))
        ]
        self._settle(items, problems)
        rows = [row for item in items if (row := self._row(item, problems))]
        report = WriteReport()
        if rows:
            database.ensure_tables()
            report = database.write(rows)
        states = {state: sum(item.state == state for item in items) for state in STATES}
        self.log.info(
            "Ingested %d documents into %s (%s): %d written (%d fields), %d unchanged, %d kept a newer row, "
            "%d kept a succeeded row; %s",
            len(rows),
            database.results,
            self.conn_id,
            report.written,
            report.fields,
            report.unchanged,
            report.kept_newer,
            report.kept_succeeded,
            ", ".join(f"{count} {state}" for state, count in states.items()),
        )
        if problems:
            for problem, _ in problems:
                self.log.error("Not ingested: %s", problem)
            listed = "; ".join(problem for problem, _ in problems[:SHOWN_PROBLEMS])
            more = f" (and {len(problems) - SHOWN_PROBLEMS} more)" if len(problems) > SHOWN_PROBLEMS else ""
            error = ResultMissingError if all(missing for _, missing in problems) else IngestError
            raise error(
                f"{len(problems)} of {len(entries)} items not ingested, the other {len(rows)} were: {listed}{more}",
                conn_id=self.conn_id,
            )
        return {"documents": len(rows), **report.as_dict(), **states}

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The two tables it writes are its outputs, in its connection's namespace (for OpenLineage)."""
        from airflow.providers.openlineage.extractors import OperatorLineage

        database = ResultsDatabase(
            self.conn_id, results_table=self.results_table, fields_table=self.fields_table, schema=self.schema
        )
        tables = (database.results_table, database.fields_table)
        return OperatorLineage(outputs=table_datasets(database.hook, tables, database.schema))

    # ---- reading what the sensor returned -------------------------------------------------------------

    def _entries(self) -> tuple[list[Any], list[tuple[str | None, str | None]]]:
        """The results as a list, and for each what ``inputs`` says of it (name, SHA-256)."""
        results, single = self.results, isinstance(self.results, Mapping)
        if results is None:
            entries: list[Any] = []
        elif single:
            entries = [results]
        elif isinstance(results, (str, bytes)) or not isinstance(results, Iterable):
            raise self._bad(
                "results", f"expected a sensor's result or outcomes, got {type(results).__name__}"
            )
        else:
            entries = list(results)
        given = self.inputs
        if given is None:
            given = [None] * len(entries)
        elif single and (isinstance(given, (str, Mapping))):
            given = [given]
        elif isinstance(given, (str, bytes, Mapping)) or not isinstance(given, Iterable):
            raise self._bad("inputs", f"expected a list aligned with the results, got {type(given).__name__}")
        given = list(given)
        if len(given) != len(entries):
            raise self._bad("inputs", f"{len(given)} inputs for {len(entries)} results")
        return entries, [self._input(value) for value in given]

    def _input(self, value: Any) -> tuple[str | None, str | None]:
        if value is None:
            return None, None
        if isinstance(value, Mapping):
            name, sha = value.get("input"), value.get("sha256")
            return (None if name is None else str(name)), sha
        return str(value), None

    def _item(
        self, index: int, entry: Any, given: tuple[str | None, str | None], problems: list[tuple[str, bool]]
    ) -> _Item | None:
        if not isinstance(entry, Mapping):
            raise self._bad(
                "results", f"item {index} is a {type(entry).__name__}, not a result or an outcome"
            )
        if not ("state" in entry and "result_uri" in entry):
            return self._single(index, entry, given)
        state = entry["state"]
        if state not in STATES:
            raise self._bad("results", f"item {index} has an unknown state {state!r}")
        name = entry.get("input") or given[0]
        sha = entry.get("sha256") or given[1] or (content_sha256(given[0]) if given[0] else None)
        item = _Item(index, state, name, sha, reference=entry.get("reference"), error=entry.get("error"))
        if state != "succeeded":
            return item
        uri = entry.get("result_uri")
        try:
            if not uri:
                raise FileNotFoundError(uri)
            record = read_json(uri)
        except FileNotFoundError:
            problems.append((f"item {index} ({name}): result {uri} is not in the results store", True))
            return None
        except (OSError, ValueError) as exc:
            problems.append((f"item {index} ({name}): result {uri} cannot be read: {exc}", False))
            return None
        item.vendor = vendor_id(record.get("vendor"))
        item.job = record.get("job") or None
        if item.vendor is not None:
            item.analysis = READERS[item.vendor].analysis_of_job(item.job or {})
        item.state = record.get("state") or state
        item.error, item.finished_at = record.get("error"), record.get("finished_at")
        item.result, item.result_uri = record.get("result"), uri
        return item

    def _single(self, index: int, result: Mapping[str, Any], given: tuple[str | None, str | None]) -> _Item:
        """A bare result JSON: the sensor returned the vendor's result itself."""
        name, sha = given
        if name and not sha:
            sha = content_sha256(name)
        vendor = vendor_id(self.vendor) if self.vendor else infer_vendor(result)
        reader = READERS.get(vendor) if vendor else None
        if reader is not None:
            name = name or reader.input_name(result)
        if not sha and not given[0]:
            # No document to name: the result itself is the key (idempotent, not a document identity).
            sha = text_sha256(_canonical(result))
        analysis = self.analysis or (reader.analysis_of_result(result) if reader else None)
        # A bare result says not when it was fetched: no finished_at, so it neither beats nor loses to a
        # landed record of the same document by age.
        return _Item(index, "succeeded", name, sha, vendor, analysis, result=result)

    # ---- vendor and analysis ---------------------------------------------------------------------------

    def _settle(self, items: list[_Item], problems: list[tuple[str, bool]]) -> None:
        """Fill in vendor and analysis where no record said them; refuse parameters that contradict one."""
        vendor = None
        if self.vendor:
            vendor = vendor_id(self.vendor)
            if vendor is None:
                raise self._bad(
                    "vendor", f"unknown vendor {self.vendor!r}; expected one of {sorted(READERS)}"
                )
        for item in items:
            if vendor and item.vendor and item.vendor != vendor:
                raise self._bad("vendor", f"{self.vendor!r}, but item {item.index} is a {item.vendor} result")
            if self.analysis and item.analysis and item.analysis != self.analysis:
                raise self._bad(
                    "analysis", f"{self.analysis!r}, but item {item.index}'s job says {item.analysis!r}"
                )
        # One sensor's list is one vendor and one analysis: items without a record take the others'.
        vendor = vendor or next((i.vendor for i in items if i.vendor), None)
        analysis = self.analysis or next(
            (i.analysis for i in items if i.analysis and i.vendor == vendor), None
        )
        for item in items:
            item.vendor = item.vendor or vendor
            if item.vendor is not None:
                item.analysis = item.analysis or analysis or READERS[item.vendor].default_analysis
        unsettled = [item.index for item in items if not (item.vendor and item.analysis)]
        if unsettled:
            also = f"; also: {problems[0][0]}" if problems else ""
            raise self._bad(
                "vendor",
                f"cannot tell the vendor and analysis of items {unsettled} (no landed record says them): "
                f"pass vendor= and analysis={also}",
            )

    def _row(self, item: _Item, problems: list[tuple[str, bool]]) -> DocumentRow | None:
        assert item.vendor is not None  # _settle saw to it
        assert item.analysis is not None
        job = item.job
        if job is None and item.reference:
            job = READERS[item.vendor].public_reference(item.reference, item.analysis)
        # Outcomes of submits that record no input (mapped docimprint jobs) without ``inputs``: the job is
        # the key, idempotent for that job but blind to the same document in another one.
        key = document_key(item.sha256, item.input_name) or (text_sha256(_canonical(job)) if job else None)
        if key is None:
            problems.append((f"item {item.index}: names no input and no job to key its row on", False))
            return None
        return document_row(
            vendor=item.vendor,
            analysis=item.analysis,
            input_sha256=key,
            input_name=item.input_name,
            state=item.state,
            job=job,
            error=item.error if item.state != "succeeded" else None,
            finished_at=item.finished_at,
            result=item.result,
            result_uri=item.result_uri,
        )

    def _bad(self, param: str, problem: str) -> DocJobsInputError:
        return DocJobsInputError(f"parameter {param!r}: {problem}", conn_id=self.conn_id)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
