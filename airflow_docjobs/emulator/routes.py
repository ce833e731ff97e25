"""
The emulator's HTTP plumbing, the same for every vendor.

A vendor's route (journal, fault injection, auth, then its handler), the vendor-shaped answer to an
injected fault, the request body readers, and the ``POST /_emulator/bulk`` request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from airflow_docjobs.emulator.core import Emulator, Fault

if TYPE_CHECKING:
    from starlette.datastructures import FormData

BULK_LIMIT = 1_000_000

Handler = Callable[[Request, Emulator], Awaitable[Response]]


@dataclass(frozen=True)
class Vendor:
    """How one vendor authenticates and shapes its error bodies."""

    name: str
    secret_header: str
    secret_prefix: str
    error: Callable[[Request, int, str], Response]
    unauthorized: Callable[[Request], Response]
    # Other (header, prefix) pairs the vendor also takes the secret in (docimprint: a Bearer API key).
    other_secrets: tuple[tuple[str, str], ...] = ()

    def authorized(self, request: Request, api_key: str) -> bool:
        """Whether the request carries the vendor's secret header (or another it takes) with ``api_key``."""
        return any(
            request.headers.get(header) == f"{prefix}{api_key}"
            for header, prefix in ((self.secret_header, self.secret_prefix), *self.other_secrets)
        )


def detail_error(request: Request, status: int, detail: str) -> Response:
    """A FastAPI-style error body, ``{"detail": ...}`` (Finovox and myBiros answer so)."""
    return JSONResponse({"detail": detail}, status_code=status)


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
        entry = emulator.record(vendor.name, request, authorized)
        response = await answer(request, emulator, entry, authorized)
        entry["status"] = response.status_code  # answered: what it says no longer depends on the clock
        return response

    async def answer(
        request: Request, emulator: Emulator, entry: dict[str, Any], authorized: bool
    ) -> Response:
        try:
            await request.body()  # received in full before any delay, as a vendor receives an upload
        except ClientDisconnect:  # the caller left mid-upload: the vendor never got the request
            entry["client_gone"] = "mid-upload"
            return Response(status_code=499)
        fault = emulator.take_fault(vendor.name, request.url.path.removeprefix(prefix), request.method)
        if fault is not None:
            if fault.delay > 0:
                await asyncio.sleep(fault.delay)
            if fault.status is not None or fault.body is not None:
                return fault_response(vendor, request, fault)
        if not (authorized or public):
            return vendor.unauthorized(request)
        try:
            response = await handler(request, emulator)
            if await request.is_disconnected():  # the vendor took it, its caller never read the answer
                entry["client_gone"] = "before-answer"
            return response
        finally:
            await request.close()  # the uploaded files of a form it read (Starlette leaves them open)

    return Route(prefix + path, endpoint, methods=methods)


def fault_response(vendor: Vendor, request: Request, fault: Fault) -> Response:
    """The vendor-shaped error (or a fault's raw HTML body) for a fault, with its ``Retry-After``."""
    status = fault.status or 500
    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
    if fault.body is not None:
        if fault.body.lstrip().startswith(("{", "[")):  # a vendor's recorded answer, replayed as it came
            return Response(fault.body, status_code=status, headers=headers, media_type="application/json")
        # Gateways and load balancers answer with HTML pages: clients must cope with a non-JSON error.
        return HTMLResponse(fault.body, status_code=status, headers=headers)
    response = vendor.error(request, status, f"Emulated fault: HTTP {status}")
    response.headers.update(headers)
    return response


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


@dataclass(frozen=True)
class Bulk:
    """
    A ``POST /_emulator/bulk`` request: ``count`` jobs of one vendor, made at once without uploads.

    ``name`` stands for the uploaded file name (it selects the scenarios and seeds the values);
    ``options`` are the vendor's own fields, each vendor module's ``BULK_OPTIONS`` filled in for the
    ones not given.
    """

    vendor: str
    count: int
    name: str = "doc.pdf"
    processing_seconds: float | None = None
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, vendor_options: Mapping[str, Mapping[str, str]]) -> Bulk:
        """A bulk request from its JSON body (``POST /_emulator/bulk``); ``ValueError`` for a bad field."""
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        vendor = data.get("vendor")
        if vendor not in vendor_options or not isinstance(vendor, str):
            raise ValueError(f"vendor must be one of {', '.join(vendor_options)}")
        defaults = vendor_options[vendor]
        common = {"vendor", "count", "name", "processing_seconds"}
        if unknown := sorted(set(data) - common - set(defaults)):
            raise ValueError(f"unknown fields {unknown} for {vendor}")
        count = data.get("count")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= BULK_LIMIT:
            raise ValueError(f"count must be an integer from 1 to {BULK_LIMIT}")
        name = data.get("name", "doc.pdf")
        if not isinstance(name, str) or not name:
            raise ValueError("name must be a non-empty string")
        seconds = data.get("processing_seconds")
        if seconds is not None and (
            isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0
        ):
            raise ValueError("processing_seconds must be a non-negative number of seconds or null")
        options = {key: data.get(key, default) for key, default in defaults.items()}
        if bad := [key for key, value in options.items() if not isinstance(value, str) or not value]:
            raise ValueError(f"{bad[0]} must be a non-empty string")
        return cls(vendor, count, name, seconds, options)
