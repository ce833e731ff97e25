"""
The emulator's shared core: settings, state, auth check, fault injection, request journal and job timing.

Each vendor module only declares its routes and response shapes; everything that must behave the same for
every vendor lives here so the vendors cannot drift apart.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

VENDORS = ("finovox", "mindee", "docimprint", "biros")
# Substrings of a file name, URL or content that select a deterministic outcome (see the vendor modules).
SCENARIOS = ("fail", "never", "fraud", "reject", "noncompliant")
# Redacted from the journal for every vendor, so a test can see that a secret was sent but never its value.
SECRET_HEADERS = frozenset({"api-key", "authorization", "x-payment", "x-api-key"})
JOURNAL_LIMIT = 10_000


@dataclass
class EmulatorSettings:
    api_key: str = "emulator"
    processing_seconds: float = 2.0
    result_ttl_seconds: float = 3600.0
    review_seconds: float = 2.0

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a JSON override; raise ``ValueError`` naming the first bad field and change nothing."""
        kinds = {f.name: f.type for f in dataclasses.fields(self)}
        checked: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in kinds:
                raise ValueError(f"unknown setting {name!r}; known: {', '.join(kinds)}")
            if name == "api_key":
                if not isinstance(value, str):
                    raise ValueError("api_key must be a string")
            elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{name} must be a non-negative number of seconds")
            else:
                value = float(value)
            checked[name] = value
        for name, value in checked.items():
            setattr(self, name, value)


@dataclass
class Fault:
    """
    Answer matching requests with an error (or slow them down) instead of the vendor's real behaviour.

    ``path`` is a substring of the path after the vendor prefix ("" matches any). With neither ``status``
    nor ``body`` the fault only sleeps ``delay`` seconds and then lets the real handler answer. ``times``
    counts matching requests before the fault is used up; ``None`` means forever.
    """

    vendor: str = "*"
    path: str = ""
    method: str | None = None
    status: int | None = None
    retry_after: str | None = None
    delay: float = 0.0
    body: str | None = None
    times: int | None = None
    hits: int = 0

    def used_up(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def matches(self, vendor: str, path: str, method: str) -> bool:
        return (
            not self.used_up()
            and self.vendor in ("*", vendor)
            and self.path in path
            and (self.method is None or self.method.upper() == method)
        )

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        known = {f.name for f in dataclasses.fields(cls)} - {"hits"}
        if unknown := sorted(set(data) - known):
            raise ValueError(f"unknown fault fields {unknown}; known: {', '.join(sorted(known))}")
        fault = cls(**data)
        if fault.vendor not in (*VENDORS, "*"):
            raise ValueError(f"vendor must be one of {', '.join(VENDORS)} or '*'")
        if not isinstance(fault.path, str):
            raise ValueError("path must be a string")
        if fault.method is not None and not isinstance(fault.method, str):
            raise ValueError("method must be a string or null")
        if fault.status is not None and (
            isinstance(fault.status, bool)
            or not isinstance(fault.status, int)
            or not 100 <= fault.status <= 599
        ):
            raise ValueError("status must be an HTTP status code or null")
        if isinstance(fault.retry_after, int | float) and not isinstance(fault.retry_after, bool):
            fault.retry_after = str(fault.retry_after)
        if fault.retry_after is not None and not isinstance(fault.retry_after, str):
            raise ValueError("retry_after must be a header value or null")
        if isinstance(fault.delay, bool) or not isinstance(fault.delay, int | float) or fault.delay < 0:
            raise ValueError("delay must be a non-negative number of seconds")
        if fault.body is not None and not isinstance(fault.body, str):
            raise ValueError("body must be a string or null")
        if fault.times is not None and (
            isinstance(fault.times, bool) or not isinstance(fault.times, int) or fault.times < 1
        ):
            raise ValueError("times must be a positive integer or null")
        return fault

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Job:
    """
    One submitted piece of work. Its outcome is fixed at submit time by ``scenarios``; its state is a pure
    function of the clock, so polling never mutates anything and tests can jump through time.
    """

    key: str
    vendor: str
    kind: str
    api_key: str
    scenarios: frozenset[str]
    submitted: float  # Emulator.now() at submit
    issued_at: datetime  # wall clock at submit, for the timestamps vendors print
    duration: float  # processing_seconds at submit: later config changes do not move running jobs
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return "fail" in self.scenarios

    def elapsed(self, now: float) -> float:
        return max(0.0, now - self.submitted)

    def done(self, now: float) -> bool:
        return "never" not in self.scenarios and self.elapsed(now) >= self.duration

    def since_done(self, now: float) -> float:
        return now - self.submitted - self.duration

    def progress(self, now: float) -> float:
        if self.done(now):
            return 1.0
        return min(0.99, self.elapsed(now) / self.duration) if self.duration > 0 else 0.0

    def expired(self, now: float, ttl: float) -> bool:
        return self.done(now) and self.since_done(now) >= ttl

    def at(self, seconds_after_submit: float) -> datetime:
        return self.issued_at + timedelta(seconds=seconds_after_submit)


class Emulator:
    """State of one emulator app, reachable as ``app.state.emulator``."""

    def __init__(self, settings: EmulatorSettings | None = None) -> None:
        self.settings = settings or EmulatorSettings()
        self.faults: list[Fault] = []
        self.requests: list[dict[str, Any]] = []
        self.jobs: dict[tuple[str, str], Job] = {}
        self._skew = 0.0

    def now(self) -> float:
        return time.monotonic() + self._skew

    def advance(self, seconds: float) -> None:
        """Move the emulator's clock forward, so tests need not sleep through processing or expiry."""
        self._skew += seconds

    def reset(self) -> None:
        # In place: tests may hold references to these lists.
        self.jobs.clear()
        self.faults.clear()
        self.requests.clear()

    def new_job(self, vendor: str, kind: str, key: str, scenarios: frozenset[str], **data: Any) -> Job:
        job = Job(
            key=key,
            vendor=vendor,
            kind=kind,
            api_key=self.settings.api_key,
            scenarios=scenarios,
            submitted=self.now(),
            issued_at=datetime.now(UTC),
            duration=max(0.0, self.settings.processing_seconds),
            data=data,
        )
        self.jobs[(vendor, key)] = job
        return job

    def alias(self, job: Job, key: str) -> None:
        self.jobs[(job.vendor, key)] = job

    def get(self, vendor: str, key: str, kind: str | None = None) -> Job | None:
        job = self.jobs.get((vendor, key))
        return job if job is not None and kind in (None, job.kind) else None

    def drop(self, job: Job) -> None:
        for key in [k for k, j in self.jobs.items() if j is job]:
            del self.jobs[key]

    def take_fault(self, vendor: str, path: str, method: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(vendor, path, method):
                fault.hits += 1
                return fault
        return None

    def record(self, vendor: str, request: Request, authorized: bool) -> None:
        headers = {
            k.lower(): ("***" if k.lower() in SECRET_HEADERS else v) for k, v in request.headers.items()
        }
        self.requests.append(
            {
                "vendor": vendor,
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
                "authorized": authorized,
                "headers": headers,
            }
        )
        del self.requests[:-JOURNAL_LIMIT]


Handler = Callable[[Request, Emulator], Awaitable[Response]]


@dataclass(frozen=True)
class Vendor:
    """How one vendor authenticates and shapes its error bodies."""

    name: str
    secret_header: str
    secret_prefix: str
    error: Callable[[Request, int, str], Response]
    unauthorized: Callable[[Request], Response]

    def authorized(self, request: Request, api_key: str) -> bool:
        return request.headers.get(self.secret_header) == f"{self.secret_prefix}{api_key}"


def vendor_route(
    vendor: Vendor, path: str, handler: Handler, methods: list[str], public: bool = False
) -> Route:
    """
    A route under ``/<vendor>``: journal, then fault injection, then auth, then the vendor's handler.

    Faults come before auth because a gateway's 429/503 reaches the client whatever its credentials.
    ``public`` routes need no secret (documented as free or unauthenticated), but still record whether a
    valid one was sent.
    """
    prefix = f"/{vendor.name}"

    async def endpoint(request: Request) -> Response:
        emulator: Emulator = request.app.state.emulator
        authorized = vendor.authorized(request, emulator.settings.api_key)
        emulator.record(vendor.name, request, authorized)
        fault = emulator.take_fault(vendor.name, request.url.path.removeprefix(prefix), request.method)
        if fault is not None:
            if fault.delay > 0:
                await asyncio.sleep(fault.delay)
            if fault.status is not None or fault.body is not None:
                return fault_response(vendor, request, fault)
        if not (authorized or public):
            return vendor.unauthorized(request)
        return await handler(request, emulator)

    return Route(prefix + path, endpoint, methods=methods)


def fault_response(vendor: Vendor, request: Request, fault: Fault) -> Response:
    status = fault.status or 500
    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
    if fault.body is not None:
        # Gateways and load balancers answer with HTML pages: clients must cope with a non-JSON error.
        return HTMLResponse(fault.body, status_code=status, headers=headers)
    response = vendor.error(request, status, f"Emulated fault: HTTP {status}")
    response.headers.update(headers)
    return response


# -- helpers shared by the vendor modules -------------------------------------------------------------


def scenarios_of(*texts: str | bytes | None) -> frozenset[str]:
    """The scenario keywords found, case-insensitively, in any of ``texts``."""
    blob = " ".join(t.decode("latin-1") if isinstance(t, bytes) else t for t in texts if t).lower()
    return frozenset(s for s in SCENARIOS if s in blob)


async def read_json(request: Request) -> Any:
    """The JSON body, or ``None`` when it is absent or malformed."""
    try:
        return json.loads(await request.body())
    except ValueError:
        return None


async def read_form(request: Request) -> FormData | None:
    """The form body, or ``None`` when it is malformed."""
    try:
        return await request.form()
    except Exception:  # Starlette raises several types for a broken multipart body.
        return None


def file_extension(filename: str | None) -> str:
    return os.path.splitext(filename or "")[1].lower()


def pdf_page_count(content: bytes) -> int:
    # Good enough for the small PDFs tests send; never less than one page.
    return max(1, len(re.findall(rb"/Type\s*/Page(?![a-z])", content)))


def fernet_like_token() -> str:
    """An opaque token shaped like a Fernet token (``gAAAAAB...``), as Finovox issues."""
    raw = b"\x80" + int(time.time()).to_bytes(8, "big") + os.urandom(16) + os.urandom(48) + os.urandom(32)
    return base64.urlsafe_b64encode(raw).decode()


def is_fernet_like(token: str) -> bool:
    try:
        raw = base64.b64decode(token.encode(), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(raw) >= 57 and raw[0] == 0x80


# -- the /_emulator control API -----------------------------------------------------------------------


def _problem(message: str, status: int = 422) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


async def _faults(request: Request) -> Response:
    emulator: Emulator = request.app.state.emulator
    if request.method == "DELETE":
        emulator.faults.clear()
        return Response(status_code=204)
    if request.method == "POST":
        try:
            fault = Fault.from_json(await read_json(request))
        except (TypeError, ValueError) as exc:
            return _problem(f"invalid fault: {exc}")
        emulator.faults.append(fault)
        return JSONResponse(fault.as_json(), status_code=201)
    return JSONResponse({"faults": [f.as_json() for f in emulator.faults]})


async def _requests(request: Request) -> Response:
    emulator: Emulator = request.app.state.emulator
    if request.method == "DELETE":
        emulator.requests.clear()
        return Response(status_code=204)
    return JSONResponse(emulator.requests)


async def _config(request: Request) -> Response:
    emulator: Emulator = request.app.state.emulator
    if request.method == "POST":
        changes = await read_json(request)
        if not isinstance(changes, dict):
            return _problem("expected a JSON object of settings")
        try:
            emulator.settings.update(changes)
        except ValueError as exc:
            return _problem(str(exc))
    return JSONResponse(dataclasses.asdict(emulator.settings))


async def _reset(request: Request) -> Response:
    request.app.state.emulator.reset()
    return Response(status_code=204)


async def _health(request: Request) -> Response:
    return JSONResponse({"status": "ok", "vendors": list(VENDORS)})


CONTROL_ROUTES = [
    Route("/_emulator/faults", _faults, methods=["GET", "POST", "DELETE"]),
    Route("/_emulator/requests", _requests, methods=["GET", "DELETE"]),
    Route("/_emulator/config", _config, methods=["GET", "POST"]),
    Route("/_emulator/reset", _reset, methods=["POST"]),
    Route("/_emulator/health", _health, methods=["GET"]),
]


def create_app(settings: EmulatorSettings | None = None) -> Starlette:
    """The emulator as an ASGI app; its state is ``app.state.emulator``."""
    # Imported here because every vendor module imports this one.
    from airflow_docjobs.emulator import biros, docimprint, finovox, mindee

    app = Starlette(
        routes=[*CONTROL_ROUTES, *finovox.ROUTES, *mindee.ROUTES, *docimprint.ROUTES, *biros.ROUTES]
    )
    app.state.emulator = Emulator(settings)
    return app
