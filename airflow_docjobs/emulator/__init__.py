"""
A local emulator of the vendor APIs airflow-docjobs wraps, so tests, ``make demo`` and users' DAG tests
run offline.

One Starlette app serves every vendor under its own prefix: ``/finovox``, ``/mindee``, ``/docimprint``
and ``/biros``; ``/_emulator`` controls it (faults, request journal, settings, reset). Deterministic
scenarios are picked by a keyword in the uploaded file name, source URL or base64 content: ``fail``,
``never`` (pending forever), ``fraud`` (Finovox high risk), ``reject`` (myBiros review ends
``not_approved``) and ``noncompliant`` (Finovox case validation fails).

    from airflow_docjobs.emulator import EmulatorSettings, create_app

    app = create_app(EmulatorSettings(processing_seconds=0.2))
    app.state.emulator.advance(1.0)  # jump the clock instead of sleeping

Run it as a server with ``python -m airflow_docjobs.emulator --port 8080``, or inside a test process with
``airflow_docjobs.emulator.testing.EmulatorServer``.
"""

from airflow_docjobs.emulator.app import Emulator, EmulatorSettings, Fault, create_app

__all__ = ["Emulator", "EmulatorSettings", "Fault", "create_app"]
