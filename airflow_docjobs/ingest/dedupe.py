"""
Never pay twice for the same document: keep only the inputs whose content is not in the results table yet.

A document's identity is its content's SHA-256 (``content_sha256``: a file's bytes, a case folder's files,
a URL's text), the same the list-mode submit records and the ingest writes as ``input_sha256``; so a
document renamed, copied into another day's folder or submitted again by a re-run is still found.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from airflow_docjobs.hooks.inputs import content_sha256
from airflow_docjobs.ingest.database import DEFAULT_CONN_ID, ResultsDatabase
from airflow_docjobs.ingest.tables import FIELDS_TABLE, RESULTS_TABLE, document_key
from airflow_docjobs.ingest.vendors import vendor_id

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logging.getLogger(__name__)
# Concurrent reads when hashing an object-storage inbox: hashing is I/O bound.
HASH_THREADS = 8


def new_documents(
    candidates: Sequence[str],
    *,
    vendor: str,
    analysis: str,
    conn_id: str = DEFAULT_CONN_ID,
    results_table: str = RESULTS_TABLE,
    schema: str | None = None,
    retry_failed: bool = False,
) -> list[str]:
    """
    The candidates whose content has no row yet for this vendor and analysis, in order, each content once.

    By default every row counts, whatever its state: a ``succeeded`` document was paid for; a ``failed``
    one may have been paid for too (only docimprint says a failed job is free) and fails the same way
    again until someone looks at it; a ``rejected`` one was refused before any charge and would be again.
    With ``retry_failed`` only ``succeeded`` rows count, so failed and rejected documents are submitted
    once more.

    :param candidates: documents as the submit operator takes them (paths, URIs, case folders, URLs).
    :param vendor: ``finovox``, ``mindee``, ``docimprint`` or ``biros``.
    :param analysis: the analysis kind rows carry (``document``, ``case``, ``mindee/invoices/v4``...).
    :param conn_id: the results database (see :class:`ResultsDatabase`).
    :param results_table: the results table's name.
    :param schema: the results table's schema.
    :param retry_failed: submit failed and rejected documents again.
    """
    vendor_name = vendor_id(vendor)
    if vendor_name is None:
        raise ValueError(f"unknown vendor {vendor!r}")
    candidates = list(candidates)
    if not candidates:
        return []
    with ThreadPoolExecutor(min(HASH_THREADS, len(candidates)), thread_name_prefix="docjobs-hash") as pool:
        digests = list(pool.map(content_sha256, candidates))
    keys = [document_key(sha, str(item)) for item, sha in zip(candidates, digests, strict=True)]
    database = ResultsDatabase(conn_id, results_table=results_table, fields_table=FIELDS_TABLE, schema=schema)
    database.ensure_tables()
    known = database.known(vendor_name, analysis, set(keys))
    done = {key for key, state in known.items() if state == "succeeded" or not retry_failed}
    chosen, seen = [], set()
    for item, key in zip(candidates, keys, strict=True):
        if key in done or key in seen:
            continue
        seen.add(key)
        chosen.append(item)
    log.info(
        "%s %s: %d of %d documents are new (%d already in %s, %d duplicates)",
        vendor_name,
        analysis,
        len(chosen),
        len(candidates),
        sum(key in done for key in keys),
        results_table,
        len(candidates) - len(chosen) - sum(key in done for key in keys),
    )
    return chosen
