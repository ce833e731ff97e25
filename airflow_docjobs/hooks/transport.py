"""
The async side of the hooks: one pooled HTTP session per connection and event loop, shared by every hook.

A triggerer runs all its triggers in one event loop. A thousand deferred sensors polling through the same
connection must cost a thousand requests per round, not a thousand clients, TLS contexts and handshakes,
so :func:`acquire` hands every hook of one connection in one loop the same :class:`AsyncPool` (reference
counted). The connection is looked up once per pool, not per trigger. A pool outlives its last user by
:data:`LINGER` seconds: single-document triggers that end and start in turn (mapped sensors deferring as
their workers get to them) reuse one lookup and its sockets, not one pool, lookup and TLS handshakes each.
A pool whose key the vendor refused, or whose host it could not connect to, takes no new user: the next
one reads the connection again.

Requests stay ``httpx.Request`` / ``httpx.Response`` (Airflow's own client, and what the vendor modules
read); they travel over aiohttp. Measured on this project's machines with 1,000 concurrent waits over TLS
(``benchmarks/``), a shared ``httpx.AsyncClient`` spends 2-5x the CPU per request of the same request
through aiohttp, because httpcore's pool rescans its waiters on every release and anyio wraps TLS in
Python; aiohttp is already what Airflow's HTTP provider uses for its async hook.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import TYPE_CHECKING, Any

import aiohttp
import httpx

from airflow_docjobs.hooks.settings import MAX_CONNECTIONS

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncIterator, Awaitable, Callable

_CHUNK = 64 * 1024
# Seconds a pool stays open after its last user left, for the next one (a trigger's poll interval, by default).
LINGER = 30.0


class AsyncPool:
    """
    One aiohttp session for one connection in one event loop, plus what its users share.

    They share the settings read from the connection, and a pause that a vendor's ``429`` with ``Retry-After``
    imposes on all of them.
    """

    def __init__(self, key: tuple[str, str]) -> None:
        self.key = key
        self.users = 0
        self.settings: Any = None
        self.session: aiohttp.ClientSession | None = None
        self._paused_until = 0.0
        self._ready: asyncio.Future[None] | None = None
        self.idle_since = 0.0  # the loop's time when the last user left
        self.closer: asyncio.Task[None] | None = None  # closes it once idle for LINGER seconds

    async def open(self, load: Callable[[], Awaitable[tuple[Any, ssl.SSLContext | bool]]]) -> None:
        """Read the settings and open the session once; concurrent first users wait for the same open."""
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_future()
            try:
                self.settings, tls = await load()
                timeout = self.settings.timeout
                self.session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(ssl=tls, limit=MAX_CONNECTIONS, ttl_dns_cache=300),
                    # httpx decodes bodies from their headers; no compression is asked for.
                    skip_auto_headers=("Accept-Encoding",),
                    timeout=aiohttp.ClientTimeout(
                        total=None, sock_connect=timeout.connect, sock_read=timeout.read
                    ),
                    # httpx decodes the body from its Content-Encoding; aiohttp must hand it over untouched.
                    auto_decompress=False,
                    cookie_jar=aiohttp.DummyCookieJar(),
                )
            except BaseException as exc:
                self._ready.set_exception(exc)
                self._ready.exception()  # retrieved: later waiters re-raise it themselves
                raise
            self._ready.set_result(None)
        await asyncio.shield(self._ready)

    def pause(self, seconds: float) -> None:
        """Hold every user's next request for ``seconds`` (a rate limit applies to the key, not the job)."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    async def wait_if_paused(self) -> None:
        """Sleep out a pause imposed by a ``429``, if one is in force."""
        delay = self._paused_until - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def send(self, request: httpx.Request) -> httpx.Response:
        """Send an ``httpx.Request`` (an upload, or a caller's own client); errors raised as httpx's."""
        body: Any = request.content if isinstance(request.stream, httpx.ByteStream) else _stream(request)
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        return await self._exchange(
            request.method, str(request.url), lambda: request, headers=headers, data=body or None
        )

    async def send_call(
        self, method: str, url: str, headers: dict[str, str], params: Any = None, json: Any = None
    ) -> httpx.Response:
        """
        Send a request without a body or with a JSON one (every poll), without building an ``httpx.Request``.

        Parsing its URL alone cost a fifth of a poll's CPU at 1,000 waits. The response gets its
        request only when a reader needs the URL (a redirect, an error).
        """
        return await self._exchange(
            method,
            url,
            lambda: httpx.Request(method, url, params=params),
            headers=headers,
            params=params,
            json=json,
        )

    async def _exchange(
        self, method: str, url: str, request: Callable[[], httpx.Request], **options: Any
    ) -> httpx.Response:
        assert self.session is not None
        try:
            async with self.session.request(method, url, allow_redirects=False, **options) as reply:
                content = await reply.read()
        except aiohttp.ClientError as exc:
            raise _as_httpx_error(exc, request()) from exc
        except TimeoutError as exc:
            timeout = self.settings.timeout.read
            raise httpx.ReadTimeout(f"no answer within {timeout}s", request=request()) from exc
        response = httpx.Response(reply.status, headers=reply.raw_headers, content=content)
        if reply.status >= 300 or reply.content_type == "text/html":  # an error or a gateway's page
            response.request = request()
        return response

    def retire(self) -> None:
        """
        Take no new user: the next one opens a pool that reads the connection again.

        Called when the vendor refused the key or the host could not be reached. The users it has keep it
        until they leave; the last one closes it.
        """
        pools = _POOLS.get(asyncio.get_running_loop(), {})
        if pools.get(self.key) is self:
            del pools[self.key]

    async def close(self) -> None:
        """Close the session, if open."""
        if self.session is not None:
            await self.session.close()
            self.session = None


async def _stream(request: httpx.Request) -> AsyncIterator[bytes]:
    """A multipart upload, read from its files chunk by chunk while it is sent (never whole in memory)."""
    for chunk in request.stream:  # type: ignore[union-attr]
        yield chunk


def _as_httpx_error(exc: aiohttp.ClientError, request: httpx.Request) -> httpx.TransportError:
    """The httpx exception for an aiohttp failure, so retry rules read one vocabulary."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(str(exc) or "connect timeout", request=request)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout(str(exc) or "read timeout", request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):  # DNS failures and refused connections included
        return httpx.ConnectError(str(exc), request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(str(exc) or type(exc).__name__, request=request)
    return httpx.ReadError(str(exc) or type(exc).__name__, request=request)


_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], AsyncPool]] = (
    weakref.WeakKeyDictionary()
)


async def acquire(
    key: tuple[str, str], load: Callable[[], Awaitable[tuple[Any, ssl.SSLContext | bool]]]
) -> AsyncPool:
    """The running loop's pool for ``key`` (connection type, connection id), opened on first use."""
    pools = _POOLS.setdefault(asyncio.get_running_loop(), {})
    pool = pools.get(key)
    if pool is None:
        pool = pools[key] = AsyncPool(key)
    pool.users += 1
    try:
        await pool.open(load)
    except BaseException:
        await release(pool)
        raise
    return pool


async def release(pool: AsyncPool) -> None:
    """Give a pool back; once the last user left, it closes after :data:`LINGER` seconds without one."""
    pool.users -= 1
    if pool.users > 0:
        return
    loop = asyncio.get_running_loop()
    pools = _POOLS.get(loop, {})
    if pools.get(pool.key) is not pool:  # retired: nobody can take it up again
        await pool.close()
        return
    pool.idle_since = loop.time()
    if pool.closer is None:
        pool.closer = loop.create_task(_linger(pool))


async def _linger(pool: AsyncPool) -> None:
    """Close ``pool`` once it has had no user for LINGER seconds, or when the loop shuts down."""
    loop = asyncio.get_running_loop()
    try:
        due = pool.idle_since + LINGER
        while (left := due - loop.time()) > 0:
            await asyncio.sleep(left)
            if pool.users:  # taken up again: its next idle spell starts another closer
                return
            due = pool.idle_since + LINGER  # left again meanwhile: idle since then
    finally:  # on the loop's shutdown too (asyncio.run cancels this task): never an unclosed session
        pool.closer = None
        if pool.users == 0:
            pool.retire()
            await pool.close()


class PoolTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncClient`` transport over a shared pool, for callers who want a client of their own."""

    def __init__(self, pool: AsyncPool) -> None:
        self.pool = pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send the request through the shared pool."""
        return await self.pool.send(request)
