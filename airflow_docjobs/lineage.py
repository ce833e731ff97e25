"""
OpenLineage datasets for what the operators read and write, named as OpenLineage's naming spec says.

See https://openlineage.io/docs/spec/naming. Nothing here imports OpenLineage at module level: the operators
call it from ``get_openlineage_facets_on_complete``, which only the OpenLineage provider calls.

- a local path or ``file:///path``: namespace ``file``, name the absolute path (``file://{host}`` for a
  ``file://host/path`` URI);
- an object-storage URI (``s3://bucket/key``, ``gs://...``, any ``ObjectStoragePath`` URI): namespace
  ``{scheme}://{bucket}``, name the key, as ``ObjectStoragePath.namespace`` / ``.key`` give them;
- a URL (``https://host/path``): namespace ``https://host[:port]``, name the path;
- inline content (bytes, ``base64:``, ``data:``): no dataset.

User info (an Airflow connection id in ``s3://conn@bucket``, or a password), the query string (a
presigned URL's signature) and the fragment never reach a dataset.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_docjobs.hooks.inputs import as_path, folder_files

if TYPE_CHECKING:
    from collections.abc import Iterable


def dataset_name(location: Any) -> tuple[str, str] | None:
    """``(namespace, name)`` of one document, or ``None`` for inline content."""
    if isinstance(location, Path):
        location = str(location)
    if not isinstance(location, str) or not location.strip():
        return None
    text = location.strip()
    if text.startswith(("base64:", "data:")):
        return None
    if "://" not in text:
        return "file", os.path.abspath(os.path.expanduser(text))
    parts = urlsplit(text)
    scheme, host = parts.scheme.lower(), parts.netloc.rpartition("@")[2]
    if scheme == "file":
        return (f"file://{host}" if host else "file"), parts.path
    if scheme in ("http", "https"):
        return f"{scheme}://{host}", parts.path or "/"
    return f"{scheme}://{host}", parts.path.lstrip("/")


def datasets(locations: Iterable[Any]) -> list[Any]:
    """One OpenLineage ``Dataset`` per distinct document, in the order first given."""
    from airflow.providers.common.compat.openlineage.facet import Dataset

    names = dict.fromkeys(name for location in locations if (name := dataset_name(location)))
    return [Dataset(namespace=namespace, name=name) for namespace, name in names]


def files_in(folder: str) -> list[str]:
    """A folder's documents as a Finovox case uploads them: its own files, hidden ones skipped."""
    root = as_path(folder.strip())
    files = [p.name for p in folder_files(root)]
    if "://" in folder:
        return [folder.strip().rstrip("/") + "/" + name for name in files]
    return [str(root / name) for name in files]


def table_datasets(hook: Any, tables: Iterable[str], schema: str | None = None) -> list[Any]:
    """
    Datasets of tables behind a common-sql hook.

    The namespace is the hook's own (``get_openlineage_database_info``: ``postgres://host:port``,
    ``mysql://...``) and the name ``{database}.{schema}.{table}``. SQLite hooks give no such info: there the
    namespace is ``sqlite://{absolute path of the file}`` and the name ``[schema.]table``. Other hooks: no
    datasets.
    """
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.sqlparser import SQLParser

    connection = hook.get_connection(getattr(hook, hook.conn_name_attr))
    info = hook.get_openlineage_database_info(connection)
    if info is not None:
        namespace, database = SQLParser.create_namespace(info), info.database
        schema = schema or hook.get_openlineage_default_schema()
    elif connection.conn_type == "sqlite" and connection.host:
        namespace, database = f"sqlite://{os.path.abspath(connection.host.split('?')[0])}", None
    else:
        return []
    return [
        Dataset(namespace=namespace, name=".".join(part for part in (database, schema, table) if part))
        for table in tables
    ]
