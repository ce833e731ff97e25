"""
A local emulator of the vendor APIs airflow-docjobs wraps.

It lets tests, ``make demo`` and users' DAG tests run offline.

One Starlette app serves every vendor under its own prefix: ``/finovox``, ``/mindee``, ``/docimprint``
and ``/biros``; ``/_emulator`` controls it (faults, request journal, settings, bulk jobs, stats, reset).
Deterministic scenarios are picked by a keyword in the uploaded file name, source URL or base64 content:
``fail``, ``never`` (pending forever), ``fraud`` (Finovox high risk), ``reject`` (myBiros review ends
``not_approved``) and ``noncompliant`` (Finovox case validation fails). Other values (amounts, names,
risk sub-scores, bundle ids) derive from the input, so different documents read differently.

    from airflow_docjobs.emulator import EmulatorSettings, create_app

    app = create_app(EmulatorSettings(processing_seconds=0.2, concurrency=10, frozen_clock=True))
    app.state.emulator.advance(1.0)  # jump the clock instead of sleeping

Run it as a server with ``python -m airflow_docjobs.emulator --port 8080`` (``--help`` lists the options),
or inside a test process with ``airflow_docjobs.emulator.testing.EmulatorServer``.

Modules: ``core`` (settings, state, job clock, faults: everything the vendors share), one module per
vendor, ``app`` (assembles them and serves ``/_emulator``), ``serving`` and ``tls`` (uvicorn and HTTPS),
``testing`` (the in-process server).
"""

from airflow_docjobs.emulator.app import create_app
from airflow_docjobs.emulator.core import Emulator, EmulatorSettings, Fault

__all__ = ["Emulator", "EmulatorSettings", "Fault", "create_app"]
