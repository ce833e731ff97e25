"""
The emulator on a loopback port inside the test process, for tests that drive real HTTP clients.

The server runs in a background thread and shares its state with the test, so a test can advance the
clock, inject faults and read the journal directly::

    with EmulatorServer(EmulatorSettings(processing_seconds=0.5), tls=True) as server:
        os.environ["AIRFLOW_CONN_MINDEE_DEFAULT"] = server.connection_json("mindee")
        ...
        server.state.advance(1.0)
        assert server.connections == 1  # one kept-alive connection for every poll
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Self

import uvicorn

from airflow_docjobs.emulator.app import Emulator, EmulatorSettings, create_app
from airflow_docjobs.emulator.serving import uvicorn_config
from airflow_docjobs.emulator.tls import make_certificate


class EmulatorServer:
    """
    The emulator, served by uvicorn in a background thread of this process (for tests).

    :param settings: the emulator's settings; defaults to ``EmulatorSettings()``.
    :param host: the address to listen on.
    :param port: the port to listen on; 0 picks a free one, read back from ``port`` once started.
    :param tls: serve HTTPS with a throwaway self-signed certificate, whose path is ``ca_file``.
    """

    def __init__(
        self,
        settings: EmulatorSettings | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
    ) -> None:
        self.app = create_app(settings)
        self.state: Emulator = self.app.state.emulator
        self.host, self.port, self.tls = host, port, tls
        self.ca_file: Path | None = None  # the PEM a client must trust, while a TLS server runs
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._tls_dir: Path | None = None

    @property
    def url(self) -> str:
        """The server's root; each vendor lives under ``/<vendor>`` below it."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def connections(self) -> int:
        """TCP connections accepted (on TLS: handshakes completed) since the last reset."""
        return self.state.connections or 0

    def reset_counters(self) -> None:
        """Zero the connection and request counters, keeping jobs, faults and the journal."""
        self.state.reset_counters()

    def vendor_url(self, vendor: str) -> str:
        """The base URL of ``vendor`` on this server, e.g. ``http://127.0.0.1:8080/mindee``."""
        return f"{self.url}/{vendor}"

    def connection_json(self, vendor: str, **extra: Any) -> str:
        """
        An Airflow connection (for ``AIRFLOW_CONN_<ID>``) to ``vendor`` on this server, with the current key.

        Over TLS its extra names the certificate to trust as ``ca_bundle``.
        """
        if self.ca_file is not None:
            extra = {"ca_bundle": str(self.ca_file)} | extra
        conn = {"conn_type": vendor, "host": self.vendor_url(vendor), "password": self.state.settings.api_key}
        return json.dumps(conn | ({"extra": extra} if extra else {}))

    def start(self, timeout: float = 10.0) -> Self:
        """Start serving in a background thread; return once it listens (its port then known)."""
        certificate = None
        if self.tls:
            self._tls_dir = Path(tempfile.mkdtemp(prefix="docjobs-emulator-tls-"))
            certificate = make_certificate(self._tls_dir)
            self.ca_file = certificate[0]
        config = uvicorn_config(
            self.app, self.host, self.port, certificate, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        # Off the main thread uvicorn installs no signal handlers, so the test runner keeps its own.
        self._thread = threading.Thread(target=self._server.run, name="docjobs-emulator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the emulator did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Stop the server, join its thread and remove the throwaway certificate."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._tls_dir is not None:
            shutil.rmtree(self._tls_dir, ignore_errors=True)
        self._server = self._thread = self._tls_dir = self.ca_file = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
