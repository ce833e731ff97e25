"""
The emulator app: the vendor modules' routes under one Starlette app, plus the ``/_emulator`` control API.

The control API covers faults, the request journal, settings, bulk jobs, stats and reset.

The shared core lives in ``core.py``; its main names are re-exported here because other code imports them
from this module.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from airflow_docjobs.emulator.core import VENDORS, Emulator, EmulatorSettings, Fault
from airflow_docjobs.emulator.routes import Bulk, read_json

if TYPE_CHECKING:
    from types import ModuleType

    from starlette.requests import Request

__all__ = ["VENDORS", "Emulator", "EmulatorSettings", "Fault", "create_app"]


# Each vendor's module is named after it, so ``VENDORS`` stays the one list of vendors.
VENDOR_MODULES: dict[str, ModuleType] = {
    name: importlib.import_module(f"{__package__}.{name}") for name in VENDORS
}
BULK_OPTIONS = {name: module.BULK_OPTIONS for name, module in VENDOR_MODULES.items()}


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
        emulator.now()  # the clock catches up with its old setting before the change...
        try:
            emulator.settings.update(changes)
        except ValueError as exc:
            return _problem(str(exc))
        emulator.now()  # ...and freezes or thaws at this moment, not at the next vendor request
    return JSONResponse(dataclasses.asdict(emulator.settings))


async def _bulk(request: Request) -> Response:
    """Many pending jobs at once, for benchmarks: each is made by its vendor's own submit code."""
    emulator: Emulator = request.app.state.emulator
    try:
        bulk = Bulk.from_json(await read_json(request), BULK_OPTIONS)
        make = VENDOR_MODULES[bulk.vendor].bulk_job(emulator, bulk)
    except ValueError as exc:
        return _problem(f"invalid bulk request: {exc}")
    return JSONResponse({"references": [make().key for _ in range(bulk.count)]}, status_code=201)


async def _stats(request: Request) -> Response:
    return JSONResponse(request.app.state.emulator.stats())


async def _lags(request: Request) -> Response:
    late_after = request.query_params.get("late_after")
    return JSONResponse(request.app.state.emulator.lags(None if late_after is None else float(late_after)))


async def _reset(request: Request) -> Response:
    request.app.state.emulator.reset()
    return Response(status_code=204)


async def _health(request: Request) -> Response:
    return JSONResponse({"status": "ok", "vendors": list(VENDORS)})


CONTROL_ROUTES = [
    Route("/_emulator/faults", _faults, methods=["GET", "POST", "DELETE"]),
    Route("/_emulator/requests", _requests, methods=["GET", "DELETE"]),
    Route("/_emulator/config", _config, methods=["GET", "POST"]),
    Route("/_emulator/bulk", _bulk, methods=["POST"]),
    Route("/_emulator/stats", _stats, methods=["GET"]),
    Route("/_emulator/lags", _lags, methods=["GET"]),
    Route("/_emulator/reset", _reset, methods=["POST"]),
    Route("/_emulator/health", _health, methods=["GET"]),
]


def create_app(settings: EmulatorSettings | None = None) -> Starlette:
    """The emulator as an ASGI app; its state is ``app.state.emulator``."""
    vendor_routes = [route for module in VENDOR_MODULES.values() for route in module.ROUTES]
    app = Starlette(routes=[*CONTROL_ROUTES, *vendor_routes])
    app.state.emulator = Emulator(settings)
    return app
