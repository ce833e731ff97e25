"""
The emulator on a loopback port inside the test process, for tests that drive real HTTP clients.

The server runs in a background thread and shares its state with the test, so a test can advance the
clock, inject faults and read the journal directly::

    with EmulatorServer(EmulatorSettings(processing_seconds=0.5)) as server:
        os.environ["AIRFLOW_CONN_MINDEE_DEFAULT"] = server.connection_json("mindee")
        ...
        server.state.advance(1.0)
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Self

import uvicorn

from airflow_docjobs.emulator.app import Emulator, EmulatorSettings, create_app


class EmulatorServer:
    def __init__(
        self, settings: EmulatorSettings | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.app = create_app(settings)
        self.state: Emulator = self.app.state.emulator
        self.host, self.port = host, port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The server's root; each vendor lives under ``/<vendor>`` below it."""
        return f"http://{self.host}:{self.port}"

    def vendor_url(self, vendor: str) -> str:
        return f"{self.url}/{vendor}"

    def connection_json(self, vendor: str, **extra: Any) -> str:
        """An Airflow connection (for ``AIRFLOW_CONN_<ID>``) to ``vendor`` on this server, with the current key."""
        conn = {"conn_type": vendor, "host": self.vendor_url(vendor), "password": self.state.settings.api_key}
        return json.dumps(conn | ({"extra": extra} if extra else {}))

    def start(self, timeout: float = 10.0) -> Self:
        config = uvicorn.Config(self.app, host=self.host, port=self.port, log_level="warning", lifespan="off")
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
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
