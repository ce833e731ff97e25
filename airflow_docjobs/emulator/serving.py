"""The uvicorn side shared by the CLI and ``EmulatorServer``: connection counting and TLS."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol

if TYPE_CHECKING:
    import asyncio
    from pathlib import Path

    from airflow_docjobs.emulator.core import Emulator


def counting_protocol(emulator: Emulator) -> type[asyncio.Protocol]:
    """
    Uvicorn's own HTTP protocol (httptools or h11), counting accepted connections.

    Connections are counted in ``emulator.connections`` from now on. On a TLS port asyncio makes the protocol
    only once the handshake has completed, so a connection counts as one full handshake.
    """
    emulator.connections = 0

    class CountingProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: asyncio.Transport) -> None:
            emulator.connections = (emulator.connections or 0) + 1
            super().connection_made(transport)

    return CountingProtocol


def uvicorn_config(
    app: Any, host: str, port: int, certificate: tuple[Path, Path] | None = None, **options: Any
) -> uvicorn.Config:
    """
    A uvicorn config serving ``app``, counting its connections, over TLS when given a ``certificate``.

    :param app: the emulator app, or an ASGI wrapper of it with the same ``state``.
    :param certificate: ``(certificate, key)`` PEM paths, as ``tls.make_certificate`` writes them.
    :param options: any other ``uvicorn.Config`` argument.
    """
    tls: dict[str, Any] = (
        {"ssl_certfile": certificate[0], "ssl_keyfile": certificate[1]} if certificate else {}
    )
    http = counting_protocol(app.state.emulator)
    return uvicorn.Config(app, host=host, port=port, http=http, **tls, **options)
