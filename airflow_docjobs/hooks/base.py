"""
What every vendor hook shares: the verbs, the HTTP clients, auth, error classification, one poll step.

A vendor hook describes its requests as :class:`~airflow_docjobs.hooks.calls.Call` values and reads
answers into :class:`~airflow_docjobs.hooks.calls.JobStatus` values; both are pure. The sync path
(operators) and the async path (triggers) differ only in the send, as httpx's ``Client`` and
``AsyncClient`` do. The retry rules are in :mod:`~airflow_docjobs.hooks.retries`, the connection's
settings in :mod:`~airflow_docjobs.hooks.settings`.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import sys
import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import httpx
from airflow.providers.common.compat.sdk import BaseHook
from tenacity import AsyncRetrying, Retrying

from airflow_docjobs import __version__, metrics
from airflow_docjobs.exceptions import (
    REFUSED_KEY_STATUSES,
    DocJobsError,
    DocJobsInputError,
    VendorAPIError,
    VendorTransientError,
    error_for_status,
)
from airflow_docjobs.hooks import form
from airflow_docjobs.hooks.calls import Call, JobStatus, parse_body, vendor_message
from airflow_docjobs.hooks.inputs import InputRules
from airflow_docjobs.hooks.retries import (
    Attempts,
    Outcome,
    RetryRules,
    areplay,
    backoff_sleep,
    path_only,
    replay,
    transient,
)
from airflow_docjobs.hooks.settings import MAX_CONNECTIONS, ConnSettings, connection_test, read_settings, tls
from airflow_docjobs.version_compat import async_connection_lookup

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable, Mapping
    from contextlib import AbstractContextManager
    from types import ModuleType

    from airflow_docjobs.hooks import transport

# Requests one poll may take: the poll and the redirects to its result (Mindee needs one).
MAX_POLL_REQUESTS = 4
# Guards the first sync call's making of a hook's per-thread record (a list submit calls from threads).
_CALLS_LOCK = threading.Lock()

E = TypeVar("E", bound=DocJobsError)


class DocJobsHook(BaseHook):
    """
    Base of the vendor hooks.

    The connection's host holds the base URL (scheme, port and path prefix honoured; empty means the
    vendor's public default), its password the secret. The extra may set ``timeout`` and
    ``connect_timeout`` (seconds), ``verify`` (bool), ``ca_bundle`` (path to a PEM file) and the
    :class:`~airflow_docjobs.hooks.retries.Backoff` fields, and ``resend_ambiguous_submits`` (see
    ``get_provider_info.CONN_FIELDS``).

    Every vendor hook has the same verbs: :meth:`submit` (and :meth:`asubmit`) one input with the vendor's
    parameters and get its token or job id, :meth:`job_reference` to turn that into the job reference
    that :meth:`get_job_status` (and :meth:`aget_job_status`) polls.

    :param conn_id: Airflow connection id.
    """

    conn_name_attr = "conn_id"
    # Set by each vendor hook (only annotated here: the form methods below key on a hook's own conn_type).
    conn_type: ClassVar[str]
    default_conn_name: ClassVar[str]
    hook_name: ClassVar[str]
    vendor: ClassVar[str]
    default_base_url: ClassVar[str]
    auth_header: ClassVar[str]
    auth_scheme: ClassVar[str] = ""
    secret_label: ClassVar[str] = "API key"
    # Job reference fields that grant access to a result by themselves (Finovox's retrieve token).
    secret_job_keys: ClassVar[frozenset[str]] = frozenset()
    # Where a submit's answer holds the job's token or id (dotted: Mindee's is "job.id").
    reference_key: ClassVar[str]
    # Seconds the vendor keeps a result after processing, if it deletes them (Finovox: 60 minutes).
    result_ttl: ClassVar[float | None] = None
    # The key of the JSON object the vendor's error answers carry ("error" for docimprint); None: the
    # vendor answers errors as {"detail": "<its own message>"}. The connection test counts only such an
    # answer as the vendor's (tests/test_connection_check.py).
    error_envelope: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "conn_type" in cls.__dict__:
            # Airflow < 3.2 reads the connection form from these, and only from the hook's own __dict__.
            cls.get_connection_form_widgets = classmethod(form.get_connection_form_widgets)  # type: ignore[assignment]
            cls.get_ui_field_behaviour = classmethod(form.get_ui_field_behaviour)  # type: ignore[assignment]

    def __init__(self, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id or self.default_conn_name
        self._settings: ConnSettings | None = None
        self._client: httpx.Client | None = None
        # Per thread, what the last sync call went through (a list submit runs calls in threads); made by
        # the first sync call: a trigger's hook, one per waiting job, makes none.
        self._thread_calls: threading.local | None = None
        self._pool: transport.AsyncPool | None = None
        self._pool_lock: asyncio.Lock | None = None  # made by the first apool() (a trigger's hook: none)
        self._async_client: httpx.AsyncClient | None = None

    @property
    def _calls(self) -> threading.local:
        if self._thread_calls is None:
            with _CALLS_LOCK:
                self._thread_calls = self._thread_calls or threading.local()
        return self._thread_calls

    def error(self, cls: type[E], summary: str, **details: Any) -> E:
        """A typed error naming this hook's vendor and connection, with the secret scrubbed from it."""
        message = details.pop("vendor_message", None)
        secret = self._settings.secret if self._settings else None
        if message and secret:
            # Some APIs echo the key they refused; it must not reach a log, an event or the UI.
            message = message.replace(secret, "***")
        return cls(summary, vendor=self.vendor, conn_id=self.conn_id, vendor_message=message, **details)

    def auth_headers(self, secret: str, extra: Mapping[str, Any]) -> dict[str, str]:
        """The headers that carry the secret; a vendor with several ways to authenticate reads its extra."""
        return {self.auth_header: f"{self.auth_scheme}{secret}"}

    def rules(self, extensions: frozenset[str] = frozenset()) -> InputRules:
        """Input checks that name this hook's vendor and connection."""
        return InputRules(self.vendor, self.conn_id, extensions)

    def bad_input(self, param: str, problem: str) -> DocJobsInputError:
        """A parameter error, raised before any request is sent."""
        return self.rules().fail(param, problem)

    # ---- connection -----------------------------------------------------------------------------

    @property
    def settings(self) -> ConnSettings:
        """The connection's settings, read on first use (one lookup per hook, or per pool when async)."""
        if self._settings is None:
            self._settings = read_settings(self, self.get_connection(self.conn_id))
        return self._settings

    def get_conn(self) -> httpx.Client:
        """The hook's sync client, built once from the connection."""
        if self._client is None:
            settings = self.settings
            self._client = httpx.Client(
                timeout=settings.timeout,
                verify=tls(self, settings),
                # Redirects are followed by hand (Mindee's 302): credentials never leave the vendor's host.
                follow_redirects=False,
                # Enough sockets for a list submit's concurrent uploads.
                limits=httpx.Limits(max_connections=MAX_CONNECTIONS),
            )
        return self._client

    async def _aload(self) -> tuple[ConnSettings, ssl.SSLContext | bool]:
        settings = read_settings(self, await async_connection_lookup(self)(self.conn_id))
        # Loading CA certificates blocks for a moment; keep it off the triggerer's event loop.
        return settings, await asyncio.to_thread(tls, self, settings)

    async def apool(self) -> transport.AsyncPool:
        """This loop's pool for the connection, shared with every other hook of the same connection."""
        if self._pool is not None:
            return self._pool
        transport = await _load_transport()
        # A batch's first polls ask for it at once: one of them acquires it, the others wait for it.
        self._pool_lock = self._pool_lock or asyncio.Lock()
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await transport.acquire((self.conn_type, self.conn_id), self._aload)
                self._settings = self._pool.settings
        self._pool_lock = None  # later calls find the pool; a waiting trigger's hook keeps no lock
        return self._pool

    async def aget_conn(self) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` over the connection's shared pool (no lookup, no handshake of its own)."""
        if self._async_client is None:
            pool = await self.apool()
            from airflow_docjobs.hooks import transport  # loaded by apool()

            self._async_client = httpx.AsyncClient(
                base_url=pool.settings.base_url + "/",
                headers=self._auth_headers,
                transport=transport.PoolTransport(pool),
                follow_redirects=False,
            )
        return self._async_client

    def close(self) -> None:
        """Close the sync client, if one was opened."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        """Leave the shared pool (it closes once it has had no user for ``transport.LINGER`` seconds)."""
        self._async_client = None
        if self._pool is not None:
            from airflow_docjobs.hooks import transport

            pool, self._pool = self._pool, None
            await transport.release(pool)

    def __enter__(self) -> DocJobsHook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> DocJobsHook:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def probe_call(self) -> Call:
        """A free, authenticated request that cannot create a job: a poll of a job that cannot exist."""
        raise NotImplementedError

    def test_connection(self) -> tuple[bool, str]:
        """
        Ask the vendor, for free, whether it takes the key.

        With it, ``airflow connections test`` and the UI's Test button tell a refused key and an unreachable
        host from a working connection, never showing the key.
        """
        return connection_test(self)

    # ---- sending ------------------------------------------------------------------------------------

    def _address(self, call: Call) -> tuple[str, dict[str, str]]:
        """The absolute URL of a call and its headers: the key goes only to the connection's own origin."""
        base = self.settings.base_url
        if "://" not in call.path:
            return f"{base}/{call.path}", self._auth_headers
        return call.path, self._auth_headers if _origin(call.path) == _origin(base) else self._plain_headers

    @cached_property
    def _plain_headers(self) -> dict[str, str]:
        return {"User-Agent": f"airflow-docjobs/{__version__}", "Accept": "application/json"}

    @cached_property
    def _auth_headers(self) -> dict[str, str]:
        return self._plain_headers | dict(self.settings.auth)

    def _request(self, call: Call) -> AbstractContextManager[httpx.Request]:
        """The request of one attempt at ``call``, addressed and authenticated for this connection."""
        return call.request(*self._address(call))

    def send(self, call: Call) -> httpx.Response:
        """
        Send a call, retrying transient trouble; any other answer is returned as it is.

        The first attempt is made directly, and tenacity takes over only after a transient outcome: a call
        that succeeds at once (nearly every poll) costs no retry machinery.
        """
        client = self.get_conn()
        attempts = Attempts(call, self.settings.backoff)

        def attempt() -> httpx.Response:
            with self._request(call) as request:
                return client.send(request)

        try:
            response = attempt()
        except httpx.TransportError as exc:
            response = Retrying(**RetryRules(self, attempts).arguments())(replay(exc, attempt))
        else:
            if transient(call, response):
                response = Retrying(**RetryRules(self, attempts).arguments())(replay(response, attempt))
        self._calls.resent_ambiguous = attempts.resent_ambiguous
        return response

    async def asend(self, call: Call) -> httpx.Response:
        """Async twin of :meth:`send`, over the connection's shared pool. A 429 pauses every user of it."""
        pool = await self.apool()
        attempts = Attempts(call, pool.settings.backoff)

        async def attempt() -> httpx.Response:
            await pool.wait_if_paused()
            if call.uploads or call.data:
                with self._request(call) as request:
                    return await pool.send(request)
            url, headers = self._address(call)
            return await pool.send_call(call.method, url, headers, call.params, call.json)

        try:
            response = await attempt()
        except httpx.TransportError as exc:
            if isinstance(exc, httpx.ConnectError):  # a host, port or CA the connection may since have fixed
                pool.retire()
            first: Outcome = exc
        else:
            if not transient(call, response):
                if response.status_code in REFUSED_KEY_STATUSES:
                    pool.retire()  # a rotated key: the next user reads the connection again
                return response
            first = response
        return await AsyncRetrying(sleep=backoff_sleep, **RetryRules(self, attempts, pool.pause).arguments())(
            areplay(first, attempt)
        )

    # ---- reading answers ------------------------------------------------------------------------------

    def check(self, response: httpx.Response, job_id: str | None = None) -> Any:
        """Raise the typed error for an error status; return the JSON body of a success."""
        status = response.status_code
        if status >= 400:
            error, summary = error_for_status(status)
            raise self.error(
                error,
                summary,
                status_code=status,
                job_id=job_id,
                vendor_message=vendor_message(parse_body(response)),
            )
        return self.json(response, job_id)

    def json(self, response: httpx.Response, job_id: str | None = None) -> Any:
        """The JSON body of a response; a body that is not JSON raises a transient error."""
        try:
            return response.json()
        except ValueError as exc:
            # A proxy's HTML page or a cut-off body: trouble that may pass, like a 502.
            raise self.error(
                VendorTransientError,
                "answered with a body that is not JSON",
                status_code=response.status_code,
                job_id=job_id,
                vendor_message=vendor_message(response.text),
            ) from exc

    # ---- the job life cycle: submit -> reference -> poll ---------------------------------------------

    def poll_call(self, job: Mapping[str, Any]) -> Call:
        """The request that polls a job, given its JSON reference (what the trigger stores)."""
        raise NotImplementedError

    def read_poll(self, job: Mapping[str, Any], response: httpx.Response) -> JobStatus | Call:
        """Read one poll answer: a status, or a follow-up request (e.g. a redirect to the result)."""
        raise NotImplementedError

    def describe_job(self, job: Mapping[str, Any]) -> str:
        """A job reference fit for logs: secret tokens are left out."""
        return ", ".join(f"{k}={v}" for k, v in job.items() if k not in self.secret_job_keys)

    def public_job(self, job: Mapping[str, Any]) -> dict[str, Any]:
        """A job reference fit for files and tables: a secret token is replaced by its SHA-256."""
        return {
            (f"{k}_sha256" if k in self.secret_job_keys else k): (
                hashlib.sha256(str(v).encode()).hexdigest() if k in self.secret_job_keys else v
            )
            for k, v in job.items()
        }

    def get_job_status(self, job: Mapping[str, Any]) -> JobStatus:
        """Poll a job once (one request, two when the vendor redirects to the result)."""
        call = self.poll_call(job)
        metrics.count(self.conn_type, "polls")
        for _ in range(MAX_POLL_REQUESTS):
            step = self.read_poll(job, self._polled(self.send, call))
            if isinstance(step, JobStatus):
                return step
            call = step
        raise self._endless_poll(call)

    async def aget_job_status(self, job: Mapping[str, Any]) -> JobStatus:
        """Async twin of :meth:`get_job_status`."""
        call = self.poll_call(job)
        metrics.count(self.conn_type, "polls")
        for _ in range(MAX_POLL_REQUESTS):
            try:
                response = await self.asend(call)
            except VendorTransientError:
                metrics.count(self.conn_type, "poll_failures")
                raise
            step = self.read_poll(job, response)
            if isinstance(step, JobStatus):
                return step
            call = step
        raise self._endless_poll(call)

    def _polled(self, send: Callable[[Call], httpx.Response], call: Call) -> httpx.Response:
        """A poll's answer; a transient failure (after the retries) is counted before it is raised."""
        try:
            return send(call)
        except VendorTransientError:
            metrics.count(self.conn_type, "poll_failures")
            raise

    def _endless_poll(self, step: Call) -> VendorAPIError:
        return self.error(
            VendorAPIError, f"kept redirecting (last to {path_only(step.path)})", job_id=step.job_id
        )

    def submit_call(self, item: Any, *args: Any, **params: Any) -> Call:
        """The request that submits one input with the vendor's own parameters (each vendor's signature)."""
        raise NotImplementedError

    @staticmethod
    def job_reference(reference: str, *args: Any, **params: Any) -> dict[str, Any]:
        """
        The JSON job reference of a submitted input: what a trigger stores and :meth:`poll_call` reads.

        :param reference: what :meth:`submit` returned (a token or a job id).
        :param params: what else the vendor's poll needs (each vendor's signature).
        """
        raise NotImplementedError

    def submit(self, item: Any, **params: Any) -> str:
        """
        Submit one input (a document, a case, a URL: see the vendor hook); return its token or job id.

        ``params`` are those of the vendor's :meth:`submit_call`; they are checked before any request.
        """
        reference = self._reference_in(self.check(self.send(self.submit_call(item, **params))))
        metrics.count(self.conn_type, "submits")
        return reference

    async def asubmit(self, item: Any, **params: Any) -> str:
        """Async twin of :meth:`submit`."""
        reference = self._reference_in(self.check(await self.asend(self.submit_call(item, **params))))
        metrics.count(self.conn_type, "submits")
        return reference

    def last_resends(self) -> int:
        """How often this thread's last call was resent after an answer that may have created a job."""
        return getattr(self._calls, "resent_ambiguous", 0)

    def _reference_in(self, body: Any) -> str:
        """The token or job id under the dotted ``reference_key`` of a submit's answer."""
        value: Any = body
        for part in self.reference_key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if not isinstance(value, str) or not value:
            raise self.error(
                VendorAPIError,
                f"answered a submit without {self.reference_key!r}",
                vendor_message=vendor_message(body),
            )
        return value


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


_TRANSPORT = "airflow_docjobs.hooks.transport"


async def _load_transport() -> ModuleType:
    """
    ``hooks/transport.py`` (aiohttp: some 0.3 s to import), imported in a thread by the first poll.

    Not by each trigger's start-up thread: a thousand triggers started together would all wait there for
    the one import and come back to the loop at once (a 0.1 s block in ``make soak``).
    """
    module = sys.modules.get(_TRANSPORT)
    if module is None or getattr(module.__spec__, "_initializing", False):  # not yet, or half-way in a thread
        module = await asyncio.to_thread(importlib.import_module, _TRANSPORT)
    return module
