"""
The benchmark's server: the emulator in a subprocess, over TLS for the polls, plain HTTP for control.

``python benchmarks/server.py --certfile C --keyfile K`` serves one emulator app on two loopback ports and
prints ``{"tls_port", "control_port"}`` as one JSON line; closing its stdin stops it.

* The **TLS port** carries only the triggers' polls. The emulator's own ``serving.uvicorn_config``
  counts its connections (made once the TLS handshake is done, so connections = handshakes) and the
  vendor routes count requests. A small ASGI wrapper serves the ``/bench404`` shim for
  ``HttpSensorTrigger``, which can only wait for "not 404": it answers 404 while the emulator says the
  job is not complete. The shim is benchmark code, not emulator behaviour.
* The **control port** serves the same emulator (bulk job creation, reset) plus ``/_bench/stats`` and
  ``/_bench/reset`` (the TLS port's counters and this process's CPU time). It is never counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SHIM_PREFIX = "/bench404"


class Shim404:
    """The emulator app with ``/bench404/...`` answering 404 until the job it mirrors is complete."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state = app.state  # uvicorn_config counts connections into app.state.emulator

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(SHIM_PREFIX):
            await self.app(scope, receive, send)
            return
        path = scope["path"].removeprefix(SHIM_PREFIX)
        messages: list[dict[str, Any]] = []

        async def buffer(message: dict[str, Any]) -> None:
            messages.append(message)

        await self.app(dict(scope, path=path, raw_path=path.encode()), receive, buffer)
        body = b"".join(m.get("body", b"") for m in messages[1:])
        if messages[0]["status"] == 200 and json.loads(body).get("status") != "complete":
            body = b'{"detail": "not complete yet (benchmark shim)"}'
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            messages = [
                {"type": "http.response.start", "status": 404, "headers": headers},
                {"type": "http.response.body", "body": body},
            ]
        for message in messages:
            await send(message)


def control_app(emulator_app: Any) -> Any:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route

    emulator = emulator_app.state.emulator
    cpu_start = [time.process_time()]

    async def stats(request: Any) -> JSONResponse:
        return JSONResponse(emulator.stats() | {"cpu_seconds": time.process_time() - cpu_start[0]})

    async def reset(request: Any) -> JSONResponse:
        """Zero the counters; answer what they were, so one request closes a measuring round."""
        now = time.process_time()
        counted = emulator.stats() | {"cpu_seconds": now - cpu_start[0]}
        emulator.reset_counters()
        cpu_start[0] = now
        return JSONResponse(counted)

    return Starlette(
        routes=[
            Route("/_bench/stats", stats, methods=["GET"]),
            Route("/_bench/reset", reset, methods=["POST"]),
            Mount("", app=emulator_app),
        ]
    )


async def serve(certfile: Path, keyfile: Path) -> None:
    import uvicorn

    from airflow_docjobs.emulator import EmulatorSettings, create_app
    from airflow_docjobs.emulator.serving import uvicorn_config

    app = create_app(EmulatorSettings())
    # Port 0 lets asyncio bind with proto IPPROTO_TCP, so it sets TCP_NODELAY on accepted sockets
    # (without it every kept-alive response waits ~40 ms on Nagle and delayed ACKs).
    common = {"log_level": "warning", "lifespan": "off", "access_log": False}
    tls = uvicorn.Server(uvicorn_config(Shim404(app), "127.0.0.1", 0, (certfile, keyfile), **common))
    control = uvicorn.Server(uvicorn.Config(control_app(app), host="127.0.0.1", port=0, **common))
    tasks = [asyncio.create_task(tls.serve()), asyncio.create_task(control.serve())]
    while not (tls.started and control.started):
        if any(task.done() for task in tasks):
            await asyncio.gather(*tasks)
            raise SystemExit("benchmark server: uvicorn did not start")
        await asyncio.sleep(0.01)
    ports = {
        "tls_port": tls.servers[0].sockets[0].getsockname()[1],
        "control_port": control.servers[0].sockets[0].getsockname()[1],
    }
    print(json.dumps(ports), flush=True)
    # The driver closes our stdin to stop us; it is also closed when the driver dies.
    await asyncio.to_thread(sys.stdin.read)
    tls.should_exit = control.should_exit = True
    await asyncio.gather(*tasks)


class BenchServer:
    """The server subprocess, for the driver: ``with BenchServer(cert, key) as ports: ...``."""

    def __init__(self, certfile: Path, keyfile: Path) -> None:
        self.command = [sys.executable, __file__, "--certfile", str(certfile), "--keyfile", str(keyfile)]
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> dict[str, int]:
        self.process = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # Ctrl-C reaches the driver only; it stops us by closing stdin
        )
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line:
            self.__exit__()
            raise SystemExit("the benchmark server did not start")
        return json.loads(line)

    def __exit__(self, *exc_info: object) -> None:
        process = self.process
        if process is None:
            return
        if process.stdin:
            process.stdin.close()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--certfile", type=Path, required=True)
    parser.add_argument("--keyfile", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.certfile, args.keyfile))


if __name__ == "__main__":
    main()
