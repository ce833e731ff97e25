"""
A real Airflow deployment for integration tests (``test_standalone.py``, ``test_deployment.py``): the vendor
emulator and each Airflow component as subprocesses on loopback, each in its own process group, and what a
test needs to drive and inspect them: the REST API, the metadata database (SQLite or PostgreSQL, plain SQL),
the task and trigger logs (JSON lines), and the tails of every console log for failure messages.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psutil
import pytest
from cryptography.fernet import Fernet
from deployment_checks import events
from sqlalchemy import MetaData, create_engine, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from airflow_docjobs.get_provider_info import CONN_TYPES

if TYPE_CHECKING:
    from collections.abc import Callable

AIRFLOW = Path(sys.executable).parent / "airflow"
VENDORS = CONN_TYPES
# The emulator's API key, the password of every connection: one that cannot appear by accident, so that
# any occurrence of it on Airflow's side (a log, a file, a database row) is a leak.
SECRET = f"djkey-{secrets.token_hex(12)}"
STOP_TIMEOUT = 30
# The emulator keeps every request of a deployment run (tens of thousands), so a test can count them all.
JOURNAL_LIMIT = 1_000_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 60, chars: int = 8000) -> str:
    try:
        content = path.read_text(errors="replace")
    except OSError as exc:
        return f"({path}: {exc})"
    return "\n".join(content.splitlines()[-lines:])[-chars:]


class Component:
    """One long-running process (an Airflow component, the emulator) in its own process group."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None, cwd: Path):
        self.name, self.log, self.killed, self._read = name, log, False, 0
        with log.open("w") as out:
            self.process = subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own group: its children (workers, runners) go with it
            )

    def exited(self) -> int | None:
        return self.process.poll()

    def new_output(self) -> bytes:
        """The complete lines written since the last call."""
        with self.log.open("rb") as out:
            out.seek(self._read)
            chunk = out.read()
        end = chunk.rfind(b"\n") + 1
        self._read += end
        return chunk[:end]

    def kill(self) -> None:
        """
        SIGKILL the component and everything it started at once, as a lost machine or container goes.

        Its group is not enough: Airflow 3.3's supervisor puts each task process in a group of its own
        (``supervisor.py``, ``os.setpgid(0, 0)``), which would outlive a killed worker, finish its submits
        and fail only when it next speaks to its dead supervisor.
        """
        self.killed, family = True, []
        with suppress(psutil.NoSuchProcess):
            family = psutil.Process(self.process.pid).children(recursive=True)
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for process in family:
            with suppress(psutil.NoSuchProcess):
                process.kill()
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM the group, SIGKILL what is left after STOP_TIMEOUT; reap the leader."""
        pgid = self.process.pid  # start_new_session: the leader's pid is the group id
        for sig, grace in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, 10)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + grace
            while _group_alive(pgid) and time.monotonic() < deadline:
                self.process.poll()  # reap the leader as soon as it exits
                time.sleep(0.2)
            if not _group_alive(pgid):
                break
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(10)


def _group_alive(pgid: int) -> bool:
    """Any process of the group that is not a zombie (zombies wait for init to reap them)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


class Emulator(Component):
    """``python -m airflow_docjobs.emulator`` on a free loopback port, and its control API."""

    def __init__(self, work: Path, processing_seconds: float, concurrency: int = 0):
        argv = [sys.executable, "-m", "airflow_docjobs.emulator", "--port", "0", "--api-key", SECRET]
        argv += ["--processing-seconds", str(processing_seconds), "--concurrency", str(concurrency)]
        argv += ["--journal-limit", str(JOURNAL_LIMIT)]
        super().__init__("emulator", argv, work / "emulator.log", None, work)
        self.port, deadline = 0, time.monotonic() + 120  # it imports Airflow: 30 s and more on busy cores
        while not self.port and time.monotonic() < deadline and self.exited() is None:
            if match := re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.log.read_text()):
                self.port = int(match.group(1))
            time.sleep(0.1)
        if not self.port:
            self.stop()
            pytest.fail(f"the emulator did not start: {tail(self.log)}", pytrace=False)
        self.url = f"http://127.0.0.1:{self.port}"

    def control(self, method: str, path: str, body: Any = None) -> Any:
        answer = httpx.request(method, f"{self.url}/_emulator/{path}", json=body, timeout=30)
        answer.raise_for_status()
        return answer.json()

    def journal(self) -> list[dict[str, Any]]:
        """Every request so far; fails if the emulator dropped any (a count read first, then the journal)."""
        count = self.control("GET", "stats")["requests"]
        entries = self.control("GET", "requests")
        if len(entries) < count:
            pytest.fail(f"the emulator journal kept {len(entries)} of {count} requests: raise JOURNAL_LIMIT")
        return entries

    def set_clock(self, frozen: bool) -> None:
        """
        Freeze or thaw the emulator's clock now. The emulator applies a ``frozen_clock`` change only when a
        request next reads its clock (``Emulator.now``), so a thaw and a freeze with no request between
        them would not move it at all: a Finovox retrieve of an unknown token reads the clock at once.
        """
        self.control("POST", "config", {"frozen_clock": frozen})
        retrieve = {"url": f"{self.url}/finovox/retrieve", "headers": {"api-key": SECRET}, "timeout": 30}
        httpx.post(json={"retrieve_token": "tick"}, **retrieve)

    def advance(self, seconds: float) -> float:
        """Let the frozen clock run for about ``seconds``; how far it moved, as well as the client can tell."""
        before = time.monotonic()
        self.set_clock(frozen=False)
        thawed = time.monotonic()
        time.sleep(max(0.0, seconds - (thawed - before) / 2))
        frozen = time.monotonic()
        self.set_clock(frozen=True)
        return (frozen + time.monotonic()) / 2 - (before + thawed) / 2


class Airflow:
    """
    One Airflow home (``work/airflow``) and its components, their console logs in ``work``. The environment
    is built from scratch: nothing of the test process's own Airflow setup (conftest) leaks in, nor out.

    :param db_url: the metadata database, as Airflow connects to it.
    :param read_url: the same database as the test reads it (default ``db_url``).
    :param emulator: the vendor emulator every connection points at.
    :param env: more variables, over the defaults.
    :param isolated: each process (component or command) gets its own ``HOME``, ``TMPDIR``, working
        directory and ``AIRFLOW_HOME`` under ``work/{name}/``, as on separate machines: only what ``env``
        names (the DAGs folder) and the virtualenv are shared.
    """

    def __init__(
        self,
        work: Path,
        *,
        db_url: str,
        emulator: Emulator,
        read_url: str = "",
        env: dict | None = None,
        isolated: bool = False,
    ):
        self.work, self.home, self.emulator, self.isolated = work, work / "airflow", emulator, isolated
        self.home.mkdir(parents=True, exist_ok=True)
        self.fernet_key = Fernet.generate_key().decode()
        self.api_port = free_port()
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.api_port}", timeout=30)
        self.components: dict[str, Component] = {}
        self.ran: list[list[str]] = []  # the CLI commands run to their end (run), in order
        self.watchers: list[Callable[[], None]] = []  # more checks that everything runs (test_standalone's)
        self.engine = create_engine(read_url or db_url, poolclass=NullPool)
        ours = ("AIRFLOW", "_AIRFLOW", "DOCJOBS")
        self.env = {k: v for k, v in os.environ.items() if not k.upper().startswith(ours)}
        self.env |= {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            "AIRFLOW__CORE__FERNET_KEY": self.fernet_key,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__WORKERS": "1",
            # Every component signs or checks the workers' tokens with it: one value for all.
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(24),
            # Served by the scheduler and the triggerer (on every interface: Airflow has no host option).
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "600",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            "NO_COLOR": "1",
            # standalone starts each component as a bare `airflow`: this virtualenv's must come first
            "PATH": os.pathsep.join([str(AIRFLOW.parent), os.environ.get("PATH", os.defpath)]),
            # every vendor's default connection, pointing at the emulator
            **{
                f"AIRFLOW_CONN_{vendor.upper()}_DEFAULT": json.dumps(
                    {"conn_type": vendor, "host": f"{emulator.url}/{vendor}", "password": SECRET}
                )
                for vendor in VENDORS
            },
            **(env or {}),
        }

    # ---- processes ------------------------------------------------------------------------------

    def home_of(self, name: str) -> Path:
        """The ``AIRFLOW_HOME`` of a component (the shared one unless ``isolated``)."""
        return self.work / name / "airflow" if self.isolated else self.home

    def homes(self) -> list[Path]:
        """Every component's ``AIRFLOW_HOME`` (one, unless ``isolated``)."""
        return [self.home_of(name) for name in self.components] if self.isolated else [self.home]

    def _place(self, name: str, env: dict[str, str]) -> tuple[dict[str, str], Path]:
        """The environment and working directory of a process named ``name``."""
        if not self.isolated:
            return env, self.work
        root = self.work / name
        for folder in ("airflow", "tmp", "cwd"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        own = {"HOME": str(root), "TMPDIR": str(root / "tmp"), "AIRFLOW_HOME": str(root / "airflow")}
        return {**env, **own}, root / "cwd"

    def run(self, *argv: str, timeout: float = 300) -> None:
        """One CLI command to its end (``db migrate``), its output in the work folder."""
        name = "-".join(argv)
        self.ran.append(list(argv))
        env, cwd = self._place(name, self.env)
        command = Component(name, [str(AIRFLOW), *argv], self.work / f"{name}.log", env, cwd)
        with suppress(subprocess.TimeoutExpired):
            command.process.wait(timeout)
        if command.exited() != 0:
            command.stop()
            self.fail(f"`airflow {' '.join(argv)}` ended with {command.exited()}:\n{tail(command.log)}")

    def start(self, name: str, *argv: str, env: dict[str, str] | None = None) -> Component:
        own, cwd = self._place(name, {**self.env, **(env or {})})
        self.components[name] = Component(name, [str(AIRFLOW), *argv], self.work / f"{name}.log", own, cwd)
        return self.components[name]

    def start_triggerer(self, name: str, timeout: float, *args: str) -> int:
        """One more ``airflow triggerer`` (its own log server port); its job id, once its Job row shows."""
        known = {row["id"] for row in self.rows("SELECT id FROM job WHERE job_type = 'TriggererJob'")}
        self.start(
            name, "triggerer", *args, env={"AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port())}
        )
        query = "SELECT id FROM job WHERE job_type = 'TriggererJob' AND end_date IS NULL"

        def new() -> int | None:
            return next((row["id"] for row in self.rows(query) if row["id"] not in known), None)

        return self.wait(f"the {name} job row", timeout, new)

    def check_alive(self) -> None:
        """Fail fast when a component exited that the test did not kill."""
        for component in [self.emulator, *self.components.values()]:
            if not component.killed and (code := component.exited()) is not None:
                self.fail(f"{component.name} exited with status {code}")
        for watch in self.watchers:
            watch()

    def stop(self) -> None:
        self.http.close()
        for component in reversed(self.components.values()):
            component.stop()
        self.engine.dispose()

    def fail(self, message: str) -> None:
        pytest.fail(message + self.context(), pytrace=False)

    def check(self, problems: list[str]) -> None:
        if problems:
            self.fail("\n".join(f"- {problem}" for problem in problems))

    def context(self) -> str:
        """The end of every console log, for a failure message."""
        parts = [f"\n\n--- Airflow home {self.home}"]
        for component in [*self.components.values(), self.emulator]:
            status = "killed" if component.killed else f"exit {component.exited()}"
            parts.append(f"--- tail of {component.log} ({status}):\n{tail(component.log, 30, 4000)}")
        return "\n".join(parts)

    def wait(self, what: str, timeout: float, done: Callable[[], Any], every: float = 0.5) -> Any:
        """Call ``done`` until it returns something truthy, checking that every component is alive."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            # Not answering yet, or busy: the API server starting, SQLite locked by a writer.
            with suppress(httpx.HTTPError, OSError, ValueError, KeyError, OperationalError):
                if result := done():
                    return result
            time.sleep(every)
        self.fail(f"gave up after {timeout:.0f}s waiting for {what}")

    # ---- the REST API -----------------------------------------------------------------------------

    def login(self) -> bool:
        """An admin token from the simple auth manager (the API server writes the generated password)."""
        self.http.get("/api/v2/monitor/health").raise_for_status()
        generated = self.home_of("api-server") / "simple_auth_manager_passwords.json.generated"
        passwords = json.loads(generated.read_text())
        answer = self.http.post("/auth/token", json={"username": "admin", "password": passwords["admin"]})
        answer.raise_for_status()
        self.http.headers["authorization"] = f"Bearer {answer.json()['access_token']}"
        return True

    def wait_until_ready(self, dag_ids: list[str], timeout: float) -> None:
        """API server answering, an admin token issued, every DAG parsed."""
        self.wait("the API server and an admin token", timeout, self.login, every=1)
        for dag_id in dag_ids:
            path = f"/api/v2/dags/{dag_id}"
            self.wait(
                f"the DAG {dag_id} to be parsed", timeout, lambda p=path: self.http.get(p).is_success, every=1
            )

    def api(self, method: str, path: str, body: Any = None) -> Any:
        answer = self.http.request(method, path, json=body)
        if answer.status_code != 200:
            self.fail(f"{method} {path} answered {answer.status_code}: {answer.text}")
        return answer.json()

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Unpause a DAG and start a run of it; its run id."""
        self.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        run = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    # ---- the metadata database and the logs ----------------------------------------------------------

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        """Plain SQL with ``:name`` parameters (cast JSON columns to text: the dialects differ)."""
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(text(sql), params).mappings()]

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        query = "SELECT state FROM dag_run WHERE dag_id = :dag_id AND run_id = :run_id"
        found = self.rows(query, dag_id=dag_id, run_id=run_id)
        return found[0]["state"] if found else None

    def task_instances(self, dag_id: str, run_id: str) -> dict[tuple[str, int], dict[str, Any]]:
        """(task id, map index) -> state, try number, trigger id and trigger timeout."""
        query = (
            "SELECT task_id, map_index, state, try_number, trigger_id, trigger_timeout FROM task_instance"
            " WHERE dag_id = :dag_id AND run_id = :run_id"
        )
        rows = self.rows(query, dag_id=dag_id, run_id=run_id)
        return {(row["task_id"], row["map_index"]): {"dag_id": dag_id, **row} for row in rows}

    def triggers(self) -> dict[int, dict[str, Any]]:
        """Every trigger row: triggerer id, classpath, queue, kwargs as stored (``stored``) and decrypted."""
        found = {}
        for row in self.rows("SELECT id, triggerer_id, classpath, queue, kwargs FROM trigger"):
            stored = row.pop("kwargs")
            # Fernet-encrypted JSON; plain JSON on some of Airflow's migration paths.
            plain = stored if stored.startswith("{") else Fernet(self.fernet_key).decrypt(stored.encode())
            found[row.pop("id")] = {**row, "stored": stored, "kwargs": json.loads(plain)}
        return found

    def record(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """
        What a run left in the database: ``state``; ``tis`` as :meth:`task_instances`; ``xcoms``, (task id,
        map index, key) -> the value column as stored (JSON text); ``audit``, (task id, map index) -> its
        events in the audit ``log`` table, in order.
        """
        key = {"dag_id": dag_id, "run_id": run_id}
        where = " WHERE dag_id = :dag_id AND run_id = :run_id"
        xcoms = self.rows(
            "SELECT task_id, map_index, key, CAST(value AS TEXT) AS value FROM xcom" + where, **key
        )
        audit: dict[tuple[str, int], list[str]] = {}
        for row in self.rows(
            "SELECT task_id, map_index, event FROM log" + where + " ORDER BY dttm, id", **key
        ):
            audit.setdefault((row["task_id"], row["map_index"]), []).append(row["event"])
        return {
            "state": self.run_state(dag_id, run_id),
            "tis": self.task_instances(dag_id, run_id),
            "xcoms": {(row["task_id"], row["map_index"], row["key"]): row["value"] for row in xcoms},
            "audit": audit,
        }

    def dump(self) -> dict[str, str]:
        """Every row of every table of the metadata database as text, table by table: what a backup holds."""
        tables = MetaData()
        tables.reflect(self.engine)
        with self.engine.connect() as connection:
            return {
                f"metadata table {table.name}": "\n".join(
                    repr(tuple(row)) for row in connection.execute(select(table))
                )
                for table in tables.sorted_tables
            }

    def deferral_to_event(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> float | None:
        """Seconds from a task's first deferral (its task log) to its trigger's first event (trigger logs)."""
        logs = self.task_log_dir(dag_id, run_id, task_id, map_index)
        deferred = [e["timestamp"] for e in events(logs / "attempt=1.log") if "as DEFERRED" in e["event"]]
        fired = [
            e["timestamp"]
            for path in logs.glob("attempt=1.log.trigger.*.log")
            for e in events(path)
            if e["event"] == "Trigger fired event"
        ]
        if not deferred or not fired:
            return None
        return (datetime.fromisoformat(min(fired)) - datetime.fromisoformat(deferred[0])).total_seconds()

    def task_log_dir(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Path:
        path = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        return path if map_index < 0 else path / f"map_index={map_index}"
