"""
What a waiting job costs per poll: our ``DocJobTrigger`` against Airflow's HTTP provider triggers.

Our README claims that a deferred sensor costs one request per poll and nothing more: each
``DocJobTrigger`` looks its connection up once and keeps one pooled ``httpx.AsyncClient``, so every
poll is one request on a kept-alive TLS connection. Airflow's HTTP provider triggers open a new
``aiohttp.ClientSession`` for every poll, hence a new TCP connection and a new TLS handshake.

This script measures both in one run, against the docimprint emulator served over TLS on loopback:

* a throwaway CA-flagged self-signed certificate for 127.0.0.1 is written to a temp dir;
* a server subprocess (``--serve``, started by the script itself) runs the emulator with uvicorn on
  two loopback ports: a TLS port that only the triggers talk to, whose connections (counted when the
  TLS handshake completes, in a uvicorn protocol subclass) and requests (counted in an ASGI wrapper,
  cross-checked by the distinct client ``(host, port)`` pairs) are counted, and a plain-HTTP control
  port for submitting jobs and reading the counters, which is never counted;
* per phase, N jobs are submitted, then N triggers of one implementation run concurrently in one
  asyncio loop, as a triggerer runs them (built from their ``serialize()`` output, ``async for event
  in trigger.run()``, then ``cleanup()``), with connections read by Airflow from ``AIRFLOW_CONN_*``
  variables through its own lookup (in a bare process: the environment-variables secrets backend,
  which a triggerer's runner also asks first);
* each job completes at its P-th poll: the TLS front counts a job's polls and, at the P-th, zeroes the
  emulator job's duration, so the emulator itself answers "complete". Every implementation thus makes
  exactly N x P requests whatever its latency; the emulator's ``processing_seconds`` is set so that
  ``progress_pct`` still moves at every poll, as on a real job;
* the triggers' logs are rendered as the triggerer's runner subprocess renders them (Airflow's JSON
  structlog output) and dropped, their records counted;
* phases are interleaved (the order rotates every repeat) and each figure's median is printed.

Implementations (all unchanged library code, in-process):

``ours``
    ``airflow_docjobs.triggers.job.DocJobTrigger`` with ``DocimprintHook``, polling
    ``GET /docimprint/v1/jobs/{id}`` until ``status == "complete"``.
``http-event``
    ``airflow.providers.http.triggers.http.HttpEventTrigger`` polling the same URL, with a
    ``response_check_path`` coroutine that returns ``response.json()["status"] == "complete"``. It is
    the only provider trigger that can wait for a value in a 200 body.
``http-sensor``
    ``HttpSensorTrigger`` (what a deferrable ``HttpSensor`` defers to). It can only wait for "not
    404", and ``HttpSensor`` never defers when given a ``response_check``, so it polls
    ``/bench404/docimprint/v1/jobs/{id}``: a shim in this benchmark's server that answers 404 while
    the emulator says the job is not complete. The shim is benchmark code, not emulator behaviour.

Run it from the repository root::

    .venv/bin/python benchmarks/bench_polling.py --jobs 50 --polls 10 --repeat 5

It needs ``apache-airflow-providers-http`` (and so aiohttp) in the virtualenv.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import io
import ipaddress
import json
import os
import platform
import re
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SECRET = "emulator"
SOURCE = "https://example.com/doc.pdf"
SHIM_PREFIX = "/bench404"
JOBS_PATH = "/docimprint/v1/jobs/"
CHECK_MODULE = "docjobs_bench_check"
# HttpEventTrigger imports (and re-imports, every poll) its response check by dotted path: a tiny module
# written next to the certificate, the cheapest check a user could write.
CHECK_SOURCE = '''"""Response check for the benchmark's HttpEventTrigger."""


async def job_complete(response):
    return response.json().get("status") == "complete"
'''
IMPLEMENTATIONS = ("ours", "http-event", "http-sensor")


# -- certificate --------------------------------------------------------------------------------------


def make_certificate(directory: Path, key_type: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, flagged as a CA so it can be its own trust anchor."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if key_type == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "airflow-docjobs benchmark")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=key_type == "rsa",
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certfile, keyfile


# -- server side: python bench_polling.py --serve ... ---------------------------------------------------


class ServerStats:
    """Counters of the TLS port, reset between phases through the control port."""

    def __init__(self) -> None:
        self.reset()

    def reset(self, complete_after: int = 0) -> None:
        self.complete_after = complete_after
        self.polls: Counter[str] = Counter()
        self.connections = 0
        self.requests = 0
        self.clients: set[tuple[Any, ...]] = set()
        self.statuses: Counter[int] = Counter()
        self.cpu_start = time.process_time()

    def snapshot(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "requests": self.requests,
            "client_sockets": len(self.clients),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "cpu_seconds": time.process_time() - self.cpu_start,
        }


def counting_protocol(stats: ServerStats) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol, counting connections; on a TLS port it is made after the handshake."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:  # httptools is optional for uvicorn
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base

    class CountingProtocol(Base):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            stats.connections += 1
            super().connection_made(transport)

    return CountingProtocol


class TlsFront:
    """
    ASGI wrapper of the emulator on the TLS port. It counts requests and client sockets; it ends each
    job on its ``complete_after``-th poll, so every implementation makes the same number of requests
    whatever its latency (it zeroes the emulator job's duration: the emulator itself then answers
    "complete"); and it serves the ``/bench404`` shim that turns "not complete yet" into a 404 for
    ``HttpSensorTrigger``.
    """

    def __init__(self, app: Any, stats: ServerStats) -> None:
        self.app, self.stats = app, stats

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        stats = self.stats
        stats.requests += 1
        stats.clients.add(tuple(scope.get("client") or ()))
        path = scope["path"].removeprefix(SHIM_PREFIX)
        if stats.complete_after and scope["method"] == "GET" and path.startswith(JOBS_PATH):
            job_id = path.removeprefix(JOBS_PATH)
            stats.polls[job_id] += 1
            job = self.app.state.emulator.get("docimprint", job_id)
            if job is not None and stats.polls[job_id] >= stats.complete_after:
                job.duration = 0.0
        if not scope["path"].startswith(SHIM_PREFIX):

            async def counting_send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    stats.statuses[message["status"]] += 1
                await send(message)

            await self.app(scope, receive, counting_send)
            return

        scope = dict(scope, path=path, raw_path=path.encode())
        messages: list[dict[str, Any]] = []

        async def buffer(message: dict[str, Any]) -> None:
            messages.append(message)

        await self.app(scope, receive, buffer)
        status = messages[0]["status"]
        body = b"".join(m.get("body", b"") for m in messages[1:])
        if status == 200 and json.loads(body).get("status") != "complete":
            status, body = 404, b'{"detail": "not complete yet (benchmark shim)"}'
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            messages = [
                {"type": "http.response.start", "status": 404, "headers": headers},
                {"type": "http.response.body", "body": body},
            ]
        stats.statuses[status] += 1
        for message in messages:
            await send(message)


def control_app(emulator_app: Any, stats: ServerStats) -> Any:
    """The plain-HTTP control port: the emulator itself (uncounted) plus the counters."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route

    async def read(request: Any) -> JSONResponse:
        return JSONResponse(stats.snapshot())

    async def reset(request: Any) -> JSONResponse:
        stats.reset(int(request.query_params.get("complete_after", 0)))
        return JSONResponse(stats.snapshot())

    return Starlette(
        routes=[
            Route("/_bench/stats", read, methods=["GET"]),
            Route("/_bench/reset", reset, methods=["POST"]),
            Mount("", app=emulator_app),
        ]
    )


async def serve(certfile: str, keyfile: str) -> None:
    import uvicorn

    from airflow_docjobs.emulator import EmulatorSettings, create_app

    app = create_app(EmulatorSettings(api_key=SECRET))
    stats = ServerStats()
    # Port 0 and let asyncio bind: it sets TCP_NODELAY on accepted connections only when the listening
    # socket's proto is IPPROTO_TCP, and socket.create_server() makes proto 0. With such a socket every
    # response after a connection's first waits ~40 ms (Nagle + delayed ACK), which only hurts keep-alive.
    common = {"host": "127.0.0.1", "port": 0, "log_level": "warning", "lifespan": "off", "access_log": False}
    tls = uvicorn.Server(
        uvicorn.Config(
            TlsFront(app, stats),
            http=counting_protocol(stats),
            ssl_certfile=certfile,
            ssl_keyfile=keyfile,
            **common,
        )
    )
    control = uvicorn.Server(uvicorn.Config(control_app(app, stats), **common))
    servers = [
        asyncio.create_task(tls.serve()),
        asyncio.create_task(control.serve()),
    ]
    while not (tls.started and control.started):
        if any(task.done() for task in servers):
            await asyncio.gather(*servers)
            raise SystemExit("benchmark server: uvicorn did not start")
        await asyncio.sleep(0.01)
    ports = {
        "tls_port": tls.servers[0].sockets[0].getsockname()[1],
        "control_port": control.servers[0].sockets[0].getsockname()[1],
    }
    print(json.dumps(ports), flush=True)
    # The driver closes our stdin to stop us (it also closes when the driver dies).
    await asyncio.to_thread(sys.stdin.read)
    tls.should_exit = control.should_exit = True
    await asyncio.gather(*servers)


# -- driver side ----------------------------------------------------------------------------------------


@dataclass
class Phase:
    impl: str
    jobs: int
    wall: float
    cpu: float
    lookups: int
    log_records: int
    outcomes: Counter[str]
    server: dict[str, Any]
    warnings: Counter[str]

    @property
    def requests(self) -> int:
        return self.server["requests"]

    @property
    def connections(self) -> int:
        return self.server["connections"]


@dataclass
class Probes:
    """Counters installed around Airflow's code, without changing what it does."""

    lookups: int = 0
    log_records: int = 0
    # Warning and error records by kind (logger and message, ids and ports blanked out).
    warnings: Counter[str] = field(default_factory=Counter)


class LogSink(io.RawIOBase):
    """
    Where the trigger code's logs go: JSON lines, as a triggerer's trigger-runner subprocess renders them
    for its supervisor, counted and dropped (the supervisor, which writes the log files, is not here).
    """

    def __init__(self, probes: Probes, echo: bool) -> None:
        super().__init__()
        self.probes, self.echo = probes, echo

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        data = bytes(data)
        for line in data.splitlines():
            self.probes.log_records += 1
            if b'"level":"warning"' in line or b'"level":"error"' in line:
                self.probes.warnings[warning_kind(line)] += 1
            if self.echo:
                sys.stderr.write(line.decode(errors="replace") + "\n")
        return len(data)


def warning_kind(line: bytes) -> str:
    try:
        record = json.loads(line)
    except ValueError:
        return line.decode(errors="replace")[:120]
    event = str(record.get("event", "")).splitlines()[0][:120]
    event = re.sub(r"job_[0-9a-f]+", "job_...", re.sub(r":\d{2,5}/", ":.../", event))
    return f"{record.get('level')} {record.get('logger')}: {event}"


def install_probes(probes: Probes, verbose: bool) -> None:
    from airflow.sdk.definitions.connection import Connection
    from airflow.sdk.log import configure_logging, reset_logging

    # Every connection lookup in both libraries ends in Connection.get / Connection.async_get.
    sync_get, async_get = Connection.get.__func__, Connection.async_get.__func__

    def counted_get(cls: type, conn_id: str) -> Any:
        probes.lookups += 1
        return sync_get(cls, conn_id)

    async def counted_async_get(cls: type, conn_id: str) -> Any:
        probes.lookups += 1
        return await async_get(cls, conn_id)

    Connection.get = classmethod(counted_get)
    Connection.async_get = classmethod(counted_async_get)

    # What the supervisor sets up in the trigger-runner subprocess (_configure_logs_over_json_channel).
    reset_logging()
    configure_logging(json_output=True, output=LogSink(probes, verbose), sending_to_supervisor=True)


def set_client_environment(tmp: Path, certfile: Path, tls_port: int) -> None:
    """Everything Airflow and aiohttp read from the environment; must run before they are imported."""
    if "aiohttp" in sys.modules or "airflow" in sys.modules:
        raise RuntimeError("set the environment before importing airflow or aiohttp")
    os.environ["AIRFLOW_HOME"] = str(tmp / "airflow-home")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    # HttpAsyncHook has no CA-bundle setting (its 'cert' extra is dropped as unsupported by aiohttp,
    # 'verify' is only a boolean): aiohttp's default SSLContext, built when aiohttp is imported, loads
    # the OpenSSL default verify paths, which SSL_CERT_FILE overrides. Our hook uses its 'ca_bundle'
    # extra; an explicit cafile ignores SSL_CERT_FILE, so each library trusts the certificate its own way.
    os.environ["SSL_CERT_FILE"] = str(certfile)
    os.environ["AIRFLOW_CONN_DOCIMPRINT_DEFAULT"] = json.dumps(
        {
            "conn_type": "docimprint",
            "host": f"https://127.0.0.1:{tls_port}/docimprint",
            "password": SECRET,
            "extra": {"ca_bundle": str(certfile)},
        }
    )
    # HttpHook sends the extra's unknown keys as headers: X-Payment, as our hook sends it.
    os.environ["AIRFLOW_CONN_HTTP_BENCH"] = json.dumps(
        {
            "conn_type": "http",
            "host": "127.0.0.1",
            "schema": "https",
            "port": tls_port,
            "extra": {"X-Payment": SECRET},
        }
    )


def trigger_factory(impl: str, interval: float) -> Callable[[str], Any]:
    """Build a trigger the way the triggerer does: from its serialized (classpath, kwargs)."""
    from airflow.providers.common.compat.module_loading import import_string

    if impl == "ours":
        from airflow_docjobs.triggers.job import DocJobTrigger

        def make(job_id: str) -> Any:
            deadline = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)).isoformat()
            return DocJobTrigger(
                hook_class="airflow_docjobs.hooks.docimprint.DocimprintHook",
                conn_id="docimprint_default",
                job={"job_id": job_id},
                deadline=deadline,
                poll_interval=interval,
            )

    elif impl == "http-event":
        from airflow.providers.http.triggers.http import HttpEventTrigger

        def make(job_id: str) -> Any:
            return HttpEventTrigger(
                response_check_path=f"{CHECK_MODULE}.job_complete",
                http_conn_id="http_bench",
                method="GET",
                endpoint=f"docimprint/v1/jobs/{job_id}",
                poll_interval=interval,
            )

    elif impl == "http-sensor":
        from airflow.providers.http.triggers.http import HttpSensorTrigger

        def make(job_id: str) -> Any:
            return HttpSensorTrigger(
                endpoint=f"{SHIM_PREFIX.strip('/')}/docimprint/v1/jobs/{job_id}",
                http_conn_id="http_bench",
                method="GET",
                poke_interval=interval,
            )

    else:
        raise ValueError(impl)

    def deserialized(job_id: str) -> Any:
        classpath, kwargs = make(job_id).serialize()
        return import_string(classpath)(**kwargs)

    return deserialized


def outcome(payload: Any) -> str:
    if payload is True:  # HttpSensorTrigger's event
        return "success"
    if isinstance(payload, dict):
        return str(payload.get("status"))
    return repr(payload)[:40]


async def run_trigger(trigger: Any) -> str:
    """What the triggerer's run_trigger does, minus its bookkeeping: drain run(), then cleanup()."""
    results = []
    try:
        async for event in trigger.run():
            results.append(outcome(event.payload))
    finally:
        with contextlib.suppress(Exception):
            await trigger.cleanup()
    return results[0] if results else "no event"


class Bench:
    def __init__(self, args: argparse.Namespace, control_port: int, probes: Probes) -> None:
        import httpx

        self.args, self.probes = args, probes
        # TCP_NODELAY: httpx writes a POST's headers and body separately, which costs a ~40 ms
        # Nagle/delayed-ACK stall per submit on loopback.
        nodelay = httpx.AsyncHTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        self.control = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{control_port}", timeout=30, transport=nodelay
        )

    async def submit(self, jobs: int, processing_seconds: float) -> list[str]:
        control = self.control
        (await control.post("/_emulator/reset")).raise_for_status()
        response = await control.post("/_emulator/config", json={"processing_seconds": processing_seconds})
        response.raise_for_status()

        async def one() -> str:
            response = await control.post(
                "/docimprint/v1/extract",
                params={"async": "true"},
                json={"source": SOURCE},
                headers={"X-Payment": SECRET},
            )
            response.raise_for_status()
            return response.json()["job_id"]

        # Concurrently, so that all jobs are about the same age when the triggers start.
        return list(await asyncio.gather(*(one() for _ in range(jobs))))

    async def phase(self, impl: str, jobs: int, polls: int) -> Phase:
        make = trigger_factory(impl, self.args.interval)
        # Long enough that no job completes on time alone, short enough that docimprint's progress_pct
        # moves at every poll (as on a real job whose poll interval suits its length); the job
        # completes at its `polls`-th poll (see TlsFront).
        processing_seconds = 4 * polls * self.args.interval
        job_ids = await self.submit(jobs, processing_seconds)
        response = await self.control.post("/_bench/reset", params={"complete_after": polls})
        response.raise_for_status()
        lookups, records = self.probes.lookups, self.probes.log_records
        self.probes.warnings.clear()
        cpu, wall = time.process_time(), time.perf_counter()
        # The triggerer builds triggers from their serialized kwargs, then runs each in its own task.
        tasks = [asyncio.create_task(run_trigger(make(job_id))) for job_id in job_ids]
        results = await asyncio.wait_for(
            asyncio.gather(*tasks, return_exceptions=True), timeout=processing_seconds + 120
        )
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        lookups, records = self.probes.lookups - lookups, self.probes.log_records - records
        server = (await self.control.get("/_bench/stats")).json()
        outcomes = Counter(r if isinstance(r, str) else f"raised {type(r).__name__}: {r}" for r in results)
        warnings = Counter(self.probes.warnings)
        return Phase(impl, jobs, wall, cpu, lookups, records, outcomes, server, warnings)


def median(phases: list[Phase], value: Callable[[Phase], float]) -> float:
    return statistics.median(value(p) for p in phases)


def print_phase(repeat: int, total: int, phase: Phase) -> None:
    bad = {k: v for k, v in phase.outcomes.items() if k != "success"}
    server = phase.server
    print(
        f"  repeat {repeat}/{total}  {phase.impl:<11} {phase.requests:5d} req over {phase.connections:4d} conn"
        f" ({server['client_sockets']} distinct client ports)  wall {phase.wall:5.2f} s  client cpu {phase.cpu:5.2f} s"
        f"  server cpu {server['cpu_seconds']:5.2f} s  lookups {phase.lookups}  log records {phase.log_records}"
        f"  statuses {server['statuses']}" + (f"  NOT SUCCESS: {bad}" if bad else ""),
        flush=True,
    )


def versions() -> str:
    names = (
        "apache-airflow",
        "apache-airflow-providers-http",
        "aiohttp",
        "httpx",
        "uvicorn",
        "airflow-docjobs",
    )
    found = []
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found.append(f"{name} {importlib.metadata.version(name)}")
    return ", ".join(found)


def report(args: argparse.Namespace, results: dict[str, list[Phase]]) -> None:
    jobs = args.jobs
    rows = []
    header = (
        "impl",
        "polls/job",
        "requests",
        "TCP conns",
        "req/conn",
        "lookups",
        "wall s",
        "client CPU s",
        "CPU ms/req",
        "server CPU s",
        "srv ms/req",
        "log records",
    )
    medians: dict[str, dict[str, float]] = {}
    for impl, phases in results.items():
        m = {
            "requests": median(phases, lambda p: p.requests),
            "connections": median(phases, lambda p: p.connections),
            "per_conn": median(phases, lambda p: p.requests / max(1, p.connections)),
            "lookups": median(phases, lambda p: p.lookups),
            "wall": median(phases, lambda p: p.wall),
            "cpu": median(phases, lambda p: p.cpu),
            "cpu_per_req": median(phases, lambda p: 1000 * p.cpu / max(1, p.requests)),
            "server_cpu": median(phases, lambda p: p.server["cpu_seconds"]),
            "server_per_req": median(phases, lambda p: 1000 * p.server["cpu_seconds"] / max(1, p.requests)),
            "log_records": median(phases, lambda p: p.log_records),
        }
        medians[impl] = m
        rows.append(
            (
                impl,
                f"{m['requests'] / jobs:.1f}",
                f"{m['requests']:.0f}",
                f"{m['connections']:.0f}",
                f"{m['per_conn']:.1f}",
                f"{m['lookups']:.0f}",
                f"{m['wall']:.2f}",
                f"{m['cpu']:.3f}",
                f"{m['cpu_per_req']:.2f}",
                f"{m['server_cpu']:.3f}",
                f"{m['server_per_req']:.2f}",
                f"{m['log_records']:.0f}",
            )
        )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print()
    print(f"Medians over {args.repeat} repeats (each column's own median), {jobs} jobs per phase:")
    for row in [header, *rows]:
        print(
            "  "
            + "  ".join(
                str(c).rjust(w) if i else str(c).ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    print(
        "  TCP conns = connections the TLS port accepted, counted by the server's protocol once the TLS\n"
        "    handshake completed (distinct client ports, per phase above, are a cross-check and a lower bound:\n"
        "    the kernel reuses ports); lookups = Airflow connection lookups (Connection.get/async_get calls);\n"
        "  client CPU = time.process_time() of the process running the triggers (all its threads), logs rendered\n"
        "    as JSON and dropped; server CPU = the same for the emulator's process."
    )

    ours = medians.get("ours")
    print()
    print("Summary:")
    for impl, m in medians.items():
        print(
            f"  {impl + ':':<12} {m['requests']:.0f} requests over {m['connections']:.0f} connections"
            f" ({m['per_conn']:.1f} per conn), client cpu {m['cpu']:.3f} s ({m['cpu_per_req']:.2f} ms/request),"
            f" server cpu {m['server_cpu']:.3f} s ({m['server_per_req']:.2f} ms/request), wall {m['wall']:.2f} s"
        )
    if ours:
        for impl, m in medians.items():
            if impl == "ours":
                continue

            def ratio(key: str, base: dict[str, float] = m) -> str:
                return f"{ours[key] / base[key]:.2f}x" if base[key] else "n/a"

            print(
                f"  ratio ours/{impl}: connections {ratio('connections')}, requests {ratio('requests')},"
                f" client cpu {ratio('cpu')} ({ratio('cpu_per_req')} per request),"
                f" server cpu {ratio('server_cpu')} ({ratio('server_per_req')} per request), wall {ratio('wall')}"
            )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=50, help="jobs waited on concurrently per phase (50)")
    parser.add_argument("--polls", type=int, default=10, help="polls each job needs at --interval (10)")
    parser.add_argument("--interval", type=float, default=0.2, help="poll interval, seconds (0.2)")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved repeats of the comparison (5)")
    parser.add_argument(
        "--impl",
        default=",".join(IMPLEMENTATIONS),
        help=f"comma-separated, from {', '.join(IMPLEMENTATIONS)} (all)",
    )
    parser.add_argument("--key", choices=("rsa", "ec"), default="rsa", help="server key: RSA-2048 or P-256")
    parser.add_argument("--verbose", action="store_true", help="echo the triggers' JSON log lines to stderr")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--certfile", help=argparse.SUPPRESS)
    parser.add_argument("--keyfile", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.impls = [i.strip() for i in args.impl.split(",") if i.strip()]
    if unknown := set(args.impls) - set(IMPLEMENTATIONS):
        parser.error(f"unknown --impl {sorted(unknown)}")
    if args.jobs < 1 or args.polls < 2 or args.repeat < 1 or args.interval <= 0:
        parser.error("need --jobs >= 1, --polls >= 2, --repeat >= 1, --interval > 0")
    return args


async def drive(args: argparse.Namespace, control_port: int, probes: Probes) -> dict[str, list[Phase]]:
    bench = Bench(args, control_port, probes)
    print("Warm-up (imports, first TLS contexts): 3 jobs x 3 polls per implementation", flush=True)
    for impl in args.impls:
        phase = await bench.phase(impl, min(3, args.jobs), 3)
        if phase.outcomes != Counter({"success": phase.jobs}):
            print_phase(0, args.repeat, phase)
            for kind, count in phase.warnings.most_common():
                print(f"    {count} x {kind}")
            raise SystemExit(f"{impl} failed in the warm-up: {dict(phase.outcomes)}")
    results: dict[str, list[Phase]] = {impl: [] for impl in args.impls}
    for repeat in range(args.repeat):
        shift = repeat % len(args.impls)
        for impl in args.impls[shift:] + args.impls[:shift]:
            phase = await bench.phase(impl, args.jobs, args.polls)
            results[impl].append(phase)
            print_phase(repeat + 1, args.repeat, phase)
    await bench.control.aclose()
    print("\nWarning/error log records during the timed phases, all repeats (counted in the phase they were")
    print(
        "emitted in; aiohttp's 'Unclosed connection' comes from the garbage collector, so it may land later):"
    )
    for impl, phases in results.items():
        total = sum((p.warnings for p in phases), Counter())
        if not total:
            print(f"  {impl}: none")
        for kind, count in total.most_common(4):
            print(f"  {impl}: {count} x {kind}")
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        asyncio.run(serve(args.certfile, args.keyfile))
        return 0

    started = time.perf_counter()
    print("Command:", shlex.join([Path(sys.executable).name, *sys.argv]))
    with tempfile.TemporaryDirectory(prefix="docjobs-bench-") as tmpdir:
        tmp = Path(tmpdir)
        certfile, keyfile = make_certificate(tmp, args.key)
        (tmp / f"{CHECK_MODULE}.py").write_text(CHECK_SOURCE)
        sys.path.insert(0, str(tmp))
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--certfile", str(certfile), "--keyfile", str(keyfile)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # Ctrl-C reaches the driver only; it stops the server by closing stdin
        )
        try:
            line = server.stdout.readline() if server.stdout else ""
            if not line:
                raise SystemExit("the benchmark server did not start")
            ports = json.loads(line)
            set_client_environment(tmp, certfile, ports["tls_port"])
            probes = Probes()
            # Import what the triggers import (aiohttp after SSL_CERT_FILE is set), then count from here on.
            import airflow_docjobs.triggers.job  # noqa: F401

            if any(impl.startswith("http-") for impl in args.impls):
                try:
                    import airflow.providers.http.triggers.http  # noqa: F401
                except ImportError as exc:
                    raise SystemExit(
                        f"{exc}: the baselines need apache-airflow-providers-http; install it, or pass --impl ours"
                    ) from exc
            install_probes(probes, args.verbose)
            print(f"Versions: Python {platform.python_version()}, {versions()}")
            print(
                f"Emulator over TLS ({args.key.upper()} self-signed cert for 127.0.0.1) on 127.0.0.1:{ports['tls_port']},"
                f" control on :{ports['control_port']}; {os.cpu_count()} CPUs"
            )
            print(
                "TLS verification is ON for every client: ours trusts the cert through its connection's"
                " 'ca_bundle' extra;\n  the HTTP provider through SSL_CERT_FILE (HttpAsyncHook has no CA"
                " bundle option; aiohttp's default context reads it)."
            )
            print(
                f"Workload: {args.jobs} docimprint jobs per phase, polled every {args.interval} s; the server"
                f" completes each job at poll number {args.polls}\n  ({args.jobs * args.polls} requests per"
                f" phase for every implementation); {args.repeat} interleaved repeats of: {', '.join(args.impls)}"
            )
            results = asyncio.run(drive(args, ports["control_port"], probes))
        finally:
            if server.stdin:
                server.stdin.close()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    report(args, results)
    print(f"\nTotal run time {time.perf_counter() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
