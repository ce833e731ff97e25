"""
What every vendor hook shares: connection, HTTP clients, auth, retries, error classification, one poll step.

A vendor hook describes its requests as :class:`Call` values and reads answers into :class:`JobStatus`
values; both are pure. The sync path (operators) and the async path (triggers) differ only in the send,
as httpx's ``Client`` and ``AsyncClient`` do.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import hashlib
import json
import random
import socket
import ssl
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NoReturn, TypeVar
from urllib.parse import urlsplit

import aiohttp
import httpx
from airflow.providers.common.compat.sdk import BaseHook
from tenacity import AsyncRetrying, DoSleep, RetryCallState, Retrying, stop_after_attempt
from tenacity.stop import stop_base

from airflow_docjobs import __version__
from airflow_docjobs.exceptions import (
    DocJobsError,
    DocJobsInputError,
    VendorAPIError,
    VendorAuthError,
    VendorNotFoundError,
    VendorRequestError,
    VendorTransientError,
    VendorUnreachableError,
)
from airflow_docjobs.get_provider_info import CONN_FIELDS
from airflow_docjobs.hooks import form, transport
from airflow_docjobs.hooks.inputs import InputRules, Upload
from airflow_docjobs.version_compat import async_connection_lookup

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, Mapping

# Answers worth the same request again. A plain 500 is not among them: for most vendors it is a bug on
# their side that a retry will not fix, and Finovox uses it for "this folder failed" (see finovox.py).
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
# A submit creates a job that costs money, so it is sent again only after an answer that says the vendor
# did not take it (rate limited, unavailable) or when no connection was made. After a 502, a 504 or a
# read timeout the job may exist: resending could pay for it twice.
NOT_TAKEN_STATUSES = frozenset({429, 503})
NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Answers that mean "this key is refused" (docimprint says 402 Payment Required for a bad token).
REFUSED_KEY_STATUSES = frozenset({401, 402, 403})
# Requests one poll may take: the poll and the redirects to its result (Mindee needs one).
MAX_POLL_REQUESTS = 4

E = TypeVar("E", bound=DocJobsError)

PENDING: Literal["pending"] = "pending"
SUCCEEDED: Literal["succeeded"] = "succeeded"
FAILED: Literal["failed"] = "failed"


@dataclass(frozen=True)
class Call:
    """
    One HTTP request, described without sending it.

    :param method: HTTP method.
    :param path: path relative to the connection's base URL, or an absolute URL (a redirect target).
    :param job_id: vendor job reference for error messages; never a secret token.
    :param idempotent: override whether the call may be resent after an ambiguous failure.
    """

    method: str
    path: str
    json: Any = None
    params: Mapping[str, Any] | None = None
    data: Mapping[str, str] | None = None
    uploads: tuple[Upload, ...] = ()
    job_id: str | None = None
    idempotent: bool | None = None

    @property
    def repeatable(self) -> bool:
        """Whether sending it twice is harmless; by default only reads are (a POST may create a job)."""
        return self.method in ("GET", "HEAD") if self.idempotent is None else self.idempotent


@dataclass(frozen=True)
class JobStatus:
    """
    A vendor job's state, read from one poll.

    :param state: ``pending``, ``succeeded`` or ``failed``.
    :param result: on success, the vendor's final JSON body, unchanged.
    :param message: on failure, the vendor's own message.
    :param progress: while pending, a short human description of progress, if the vendor gives one.
    :param code: on failure, the vendor's structured error code, if it gives one.
    """

    state: Literal["pending", "succeeded", "failed"]
    result: Any = None
    message: str | None = None
    progress: str | None = None
    code: str | None = None

    @property
    def terminal(self) -> bool:
        """Whether the job has ended, in success or failure."""
        return self.state != PENDING


@dataclass(frozen=True)
class Backoff:
    """
    Exponential backoff with jitter, bounded by attempts and by wall-clock time.

    Set per connection in its extra: ``max_attempts``, ``retry_base_delay``, ``retry_max_delay``,
    ``retry_deadline`` (seconds).
    """

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 30.0
    deadline: float = 300.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt ``attempt + 1``: ``retry_after`` if given, else jittered backoff."""
        if retry_after is not None:
            return retry_after
        ceiling: float = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        # "Equal jitter": never less than half the backoff, so a herd of clients still spreads out.
        return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass(frozen=True)
class ConnSettings:
    """Everything a request needs, read from the Airflow connection once."""

    base_url: str
    auth: Mapping[str, str] = field(repr=False)
    secret: str = field(repr=False)
    timeout: httpx.Timeout = field(default_factory=lambda: httpx.Timeout(60.0, connect=10.0))
    backoff: Backoff = field(default_factory=Backoff)
    verify: bool = True
    ca_bundle: str | None = None
    resend_ambiguous: bool = True


@dataclass
class _Attempts:
    """Retry bookkeeping for one call, shared by the sync and async sends."""

    call: Call
    policy: Backoff
    started: float = field(default_factory=time.monotonic)
    count: int = 0
    resent_ambiguous: int = 0


_Outcome = httpx.Response | httpx.TransportError


class _PastDeadline(stop_base):
    """
    Stop when the next wait would end past the call's wall-clock deadline.

    tenacity's ``stop_before_delay`` counts from its own start; the deadline counts from the call's first
    attempt, which the sends make before tenacity takes over (see :meth:`DocJobsHook.send`).
    """

    def __init__(self, attempts: _Attempts) -> None:
        self.attempts = attempts

    def __call__(self, retry_state: RetryCallState) -> bool:
        spent = time.monotonic() - self.attempts.started
        return retry_state.upcoming_sleep > self.attempts.policy.deadline - spent


class _RetryRules:
    """
    The tenacity arguments of one call; the sync and async sends share them, only the attempt differs.

    ``retry`` decides on each outcome (and raises at once what a retry cannot fix), ``wait`` honours
    ``Retry-After`` or backs off, ``stop`` spends attempts and the deadline, ``before_sleep`` logs and counts
    the resend, ``give_up`` raises the typed error once the budget is spent.
    """

    def __init__(
        self, hook: DocJobsHook, attempts: _Attempts, pause: Callable[[float], None] | None = None
    ) -> None:
        self.hook = hook
        self.attempts = attempts
        self.pause = pause

    def arguments(self) -> dict[str, Any]:
        """Keyword arguments for ``Retrying`` and ``AsyncRetrying``."""
        return {
            "stop": stop_after_attempt(self.attempts.policy.max_attempts) | _PastDeadline(self.attempts),
            "wait": self.wait,
            "retry": self.retry,
            "before_sleep": self.before_sleep,
            "retry_error_callback": self.give_up,
        }

    def retry(self, retry_state: RetryCallState) -> bool:
        """Whether an outcome is worth another attempt; a DNS failure or a strict ambiguous submit raises."""
        outcome = _outcome(retry_state)
        if isinstance(outcome, httpx.Response):
            if outcome.status_code not in TRANSIENT_STATUSES:
                return False
        elif not isinstance(outcome, httpx.TransportError):
            return False
        self.attempts.count = retry_state.attempt_number
        call, hook = self.attempts.call, self.hook
        status, what = _describe(outcome)
        if isinstance(outcome, httpx.TransportError) and _name_not_known(outcome):
            # A host name that does not resolve is a typo or a missing DNS: five retries will not help.
            raise hook.error(
                VendorUnreachableError,
                f"could not resolve the host of {_origin_text(str(outcome.request.url))}",
                job_id=call.job_id,
                vendor_message=str(outcome) or None,
            ) from outcome
        if _ambiguous(call, outcome) and not hook.settings.resend_ambiguous:
            raise hook.error(
                VendorTransientError,
                f"{what} after the request was sent: the job may exist, so it is not resent "
                "(resend_ambiguous_submits is false)",
                status_code=status,
                job_id=call.job_id,
                vendor_message=str(outcome) if isinstance(outcome, Exception) else None,
            ) from (outcome if isinstance(outcome, Exception) else None)
        return True

    def wait(self, retry_state: RetryCallState) -> float:
        """The vendor's ``Retry-After`` when it gave one, else the policy's jittered exponential backoff."""
        outcome = _outcome(retry_state)
        retry_after = retry_after_seconds(outcome) if isinstance(outcome, httpx.Response) else None
        return self.attempts.policy.delay(retry_state.attempt_number, retry_after)

    def before_sleep(self, retry_state: RetryCallState) -> None:
        """Log the retry (and count a resend that may pay twice); a 429 pauses the async pool."""
        outcome, delay, hook = _outcome(retry_state), retry_state.upcoming_sleep, self.hook
        call = self.attempts.call
        _, what = _describe(outcome)
        if _ambiguous(call, outcome):
            # A gateway's 502/504 or a lost answer usually means the vendor never took the job, and a
            # nightly run that fails on one hiccup pages a person; but it may have: say so, and count it.
            self.attempts.resent_ambiguous += 1
            hook.log.warning(
                "%s: %s after the upload: the vendor may have created a job that will be paid for twice; "
                "sending it again (connection extra resend_ambiguous_submits=false fails instead)",
                hook.vendor,
                what,
            )
        hook.log.warning(
            "%s: %s on %s %s; retry %d in %.1fs",
            hook.vendor,
            what,
            call.method,
            _path_only(call.path),
            retry_state.attempt_number,
            delay,
        )
        if self.pause is not None and isinstance(outcome, httpx.Response) and outcome.status_code == 429:
            self.pause(delay)

    def give_up(self, retry_state: RetryCallState) -> NoReturn:
        """Raise the typed error naming the origin once attempts or the deadline are spent."""
        outcome = _outcome(retry_state)
        status, what = _describe(outcome)
        message = vendor_message(parse_body(outcome)) if isinstance(outcome, httpx.Response) else str(outcome)
        raise self.hook.error(
            VendorTransientError,
            f"still failing after {retry_state.attempt_number} attempts ({what})",
            status_code=status,
            job_id=self.attempts.call.job_id,
            vendor_message=message,
        ) from (outcome if isinstance(outcome, Exception) else None)


def _outcome(retry_state: RetryCallState) -> Any:
    """What an attempt ended with: the response it returned or the exception it raised."""
    future = retry_state.outcome
    assert future is not None
    return future.exception() if future.failed else future.result()


def _describe(outcome: _Outcome) -> tuple[int | None, str]:
    """The status of a transient outcome, if any, and a phrase naming what happened and where."""
    origin = _origin_text(str(outcome.request.url))
    if isinstance(outcome, httpx.Response):
        return outcome.status_code, f"{origin} answered HTTP {outcome.status_code}"
    if isinstance(outcome, NOT_SENT_ERRORS):
        return None, f"could not connect to {origin} ({type(outcome).__name__})"
    return None, f"no complete answer from {origin} ({type(outcome).__name__})"


def _ambiguous(call: Call, outcome: _Outcome) -> bool:
    """Whether resending after this outcome may create a second job (a submit that may have been taken)."""
    if call.repeatable:
        return False
    if isinstance(outcome, httpx.Response):
        return outcome.status_code not in NOT_TAKEN_STATUSES
    return not isinstance(outcome, NOT_SENT_ERRORS)


def _replay(first: _Outcome, attempt: Callable[[], httpx.Response]) -> Callable[[], httpx.Response]:
    """``attempt``, except that its first call gives back ``first``: the outcome the send already has."""
    pending = [first]

    def again() -> httpx.Response:
        return _given(pending.pop()) if pending else attempt()

    return again


def _areplay(
    first: _Outcome, attempt: Callable[[], Awaitable[httpx.Response]]
) -> Callable[[], Awaitable[httpx.Response]]:
    """Async twin of :func:`_replay`."""
    pending = [first]

    async def again() -> httpx.Response:
        return _given(pending.pop()) if pending else await attempt()

    return again


def _given(outcome: _Outcome) -> httpx.Response:
    """An outcome as the attempt that met it ended: returned, or raised again."""
    if isinstance(outcome, httpx.TransportError):
        raise outcome
    return outcome


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Read ``Retry-After`` as seconds (both the delta and the HTTP-date forms)."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def vendor_message(body: Any) -> str | None:
    """Find the vendor's own error message in the common shapes of an error body."""
    if isinstance(body, str):
        return body.strip()[:500] or None
    if not isinstance(body, dict):
        return None
    for key in ("message", "detail", "details", "error", "api_request"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value[:500]
        if isinstance(value, dict) and (found := vendor_message(value)):
            return found
        if isinstance(value, list) and value:
            return json.dumps(value)[:500]
    return None


class DocJobsHook(BaseHook):
    """
    Base of the vendor hooks.

    The connection's host holds the base URL (scheme, port and path prefix honoured; empty means the
    vendor's public default), its password the secret. The extra may set ``timeout`` and
    ``connect_timeout`` (seconds), ``verify`` (bool), ``ca_bundle`` (path to a PEM file) and the
    :class:`Backoff` fields, and ``resend_ambiguous_submits`` (see ``get_provider_info.CONN_FIELDS``).

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
    # Seconds the vendor keeps a result after processing, if it deletes them (Finovox: 60 minutes).
    result_ttl: ClassVar[float | None] = None

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
        # Per thread, what the last sync call went through (a list submit runs calls in threads).
        self._calls = threading.local()
        self._pool: transport.AsyncPool | None = None
        self._pool_lock = asyncio.Lock()
        self._async_client: httpx.AsyncClient | None = None

    def error(self, cls: type[E], summary: str, **details: Any) -> E:
        """A typed error naming this hook's vendor and connection, with the secret scrubbed from it."""
        message = details.pop("vendor_message", None)
        secret = self._settings.secret if self._settings else None
        if message and secret:
            # Some APIs echo the key they refused; it must not reach a log, an event or the UI.
            message = message.replace(secret, "***")
        return cls(summary, vendor=self.vendor, conn_id=self.conn_id, vendor_message=message, **details)

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
            self._settings = self.read_settings(self.get_connection(self.conn_id))
        return self._settings

    @property
    def base_url(self) -> str:
        """The vendor API's base URL, from the connection or the vendor's default."""
        return self.settings.base_url

    @property
    def timeout(self) -> httpx.Timeout:
        """The connection's request timeouts."""
        return self.settings.timeout

    def read_settings(self, conn: Any) -> ConnSettings:
        """Everything a request needs, read from the connection in one place."""
        if conn.conn_type and conn.conn_type != self.conn_type:
            raise self.error(
                DocJobsInputError,
                f"connection is of type {conn.conn_type!r}; a {self.vendor} hook needs a {self.conn_type!r} one",
            )
        secret = conn.password
        if not secret:
            raise self.error(
                DocJobsInputError,
                f"connection has no {self.secret_label} in its password field",
            )
        # Fields from the connection form may arrive with Airflow's legacy prefix.
        prefix = f"extra__{self.conn_type}__"
        extra = {k.removeprefix(prefix): v for k, v in (conn.extra_dejson or {}).items()}

        def number(key: str) -> float:
            return self._extra_number(extra, key, CONN_FIELDS[key]["schema"]["default"])

        def flag(key: str) -> bool:
            return _extra_flag(extra, key, CONN_FIELDS[key]["schema"]["default"])

        return ConnSettings(
            base_url=self._base_url(conn),
            auth={self.auth_header: f"{self.auth_scheme}{secret}"},
            secret=secret,
            timeout=httpx.Timeout(number("timeout"), connect=number("connect_timeout")),
            backoff=Backoff(
                max_attempts=int(number("max_attempts")),
                base_delay=number("retry_base_delay"),
                max_delay=number("retry_max_delay"),
                deadline=number("retry_deadline"),
            ),
            verify=flag("verify"),
            ca_bundle=extra.get("ca_bundle"),
            resend_ambiguous=flag("resend_ambiguous_submits"),
        )

    def _extra_number(self, extra: Mapping[str, Any], key: str, default: float) -> float:
        value = extra.get(key, default)
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = -1.0
        if number <= 0:
            raise self.error(
                DocJobsInputError,
                f"connection extra {key!r} must be a positive number, got {value!r}",
            )
        return number

    def _base_url(self, conn: Any) -> str:
        host = (conn.host or "").strip()
        if not host:
            return self.default_base_url
        if "://" not in host:
            host = "https://" + host + (f":{conn.port}" if conn.port else "")
            if conn.schema:
                host += "/" + conn.schema.strip("/")
        parts = urlsplit(host)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self.error(
                DocJobsInputError,
                f"connection host must be an http(s) base URL, got {host!r}",
            )
        return host.rstrip("/")

    def _tls(self, settings: ConnSettings) -> ssl.SSLContext | bool:
        if not settings.verify:
            return False
        try:
            return _tls_context(settings.ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise self.error(
                DocJobsInputError,
                f"connection extra 'ca_bundle' {settings.ca_bundle!r} is not a readable PEM file: {exc}",
            ) from exc

    def get_conn(self) -> httpx.Client:
        """The hook's sync client, built once from the connection."""
        if self._client is None:
            settings = self.settings
            self._client = httpx.Client(
                timeout=settings.timeout,
                verify=self._tls(settings),
                # Redirects are followed by hand (Mindee's 302): credentials never leave the vendor's host.
                follow_redirects=False,
                # Enough sockets for a list submit's concurrent uploads.
                limits=httpx.Limits(max_connections=transport.MAX_CONNECTIONS),
            )
        return self._client

    async def _aload(self) -> tuple[ConnSettings, ssl.SSLContext | bool]:
        settings = self.read_settings(await async_connection_lookup(self)(self.conn_id))
        # Loading CA certificates blocks for a moment; keep it off the triggerer's event loop.
        return settings, await asyncio.to_thread(self._tls, settings)

    async def apool(self) -> transport.AsyncPool:
        """This loop's pool for the connection, shared with every other hook of the same connection."""
        # A batch's first polls ask for it at once: one of them acquires it, the others wait for it.
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await transport.acquire((self.conn_type, self.conn_id), self._aload)
                self._settings = self._pool.settings
        return self._pool

    async def aget_conn(self) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` over the connection's shared pool (no lookup, no handshake of its own)."""
        if self._async_client is None:
            pool = await self.apool()
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
        """Leave the shared pool (the last user closes it)."""
        self._async_client = None
        if self._pool is not None:
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
        try:
            settings = self.settings
            response = self.send(self.probe_call())
        except DocJobsInputError as exc:
            return False, str(exc)
        except DocJobsError as exc:
            return (
                False,
                f"cannot reach {settings.base_url}: {exc}",
            )
        finally:
            self.close()
        if response.status_code in REFUSED_KEY_STATUSES:
            message = vendor_message(parse_body(response))
            return False, self.error(
                VendorAuthError,
                f"{settings.base_url} refused the {self.secret_label}",
                status_code=response.status_code,
                vendor_message=message,
            ).args[0]
        return True, (
            f"{self.vendor}: {settings.base_url} accepted the {self.secret_label} (HTTP {response.status_code} "
            "for a job that cannot exist)"
        )

    # ---- sending ------------------------------------------------------------------------------------

    def _target(self, call: Call) -> tuple[str, bool]:
        """The absolute URL of a call, and whether it is on the connection's own origin (gets the key)."""
        base = self.settings.base_url
        if "://" not in call.path:
            return f"{base}/{call.path}", True
        return call.path, _origin(call.path) == _origin(base)

    @cached_property
    def _plain_headers(self) -> dict[str, str]:
        return {"User-Agent": f"airflow-docjobs/{__version__}", "Accept": "application/json"}

    @cached_property
    def _auth_headers(self) -> dict[str, str]:
        return self._plain_headers | dict(self.settings.auth)

    @contextmanager
    def _request(self, call: Call) -> Iterator[httpx.Request]:
        """The request for one attempt; uploads are opened anew so a retry streams them again."""
        url, same_host = self._target(call)
        headers = self._auth_headers if same_host else self._plain_headers
        with ExitStack() as stack:
            files = [
                (u.field, (u.filename, stack.enter_context(u.open()), u.content_type)) for u in call.uploads
            ]
            yield httpx.Request(
                call.method,
                url,
                params=call.params,
                headers=headers,
                json=call.json,
                data=call.data,
                files=files or None,
            )

    def _retrying(self, attempts: _Attempts, pause: Callable[[float], None] | None = None) -> dict[str, Any]:
        """The tenacity arguments of one call (:class:`_RetryRules`), the same for the sync and async sends."""
        return _RetryRules(self, attempts, pause).arguments()

    def _next_delay(self, attempts: _Attempts, outcome: _Outcome) -> float:
        """
        One decision of the retry engine after a transient outcome: seconds to wait, or the typed error.

        It runs one step of the same tenacity loop as :meth:`send` (same rules, warnings and counts) without
        sleeping, so the retry arithmetic can be checked without a server.
        """
        retrying = Retrying(**self._retrying(attempts))
        retrying.begin()
        state = RetryCallState(retrying, fn=None, args=(), kwargs={})
        state.attempt_number = attempts.count + 1
        if isinstance(outcome, httpx.Response):
            state.set_result(outcome)
        else:
            state.set_exception((type(outcome), outcome, outcome.__traceback__))
        action = retrying.iter(state)
        if not isinstance(action, DoSleep):
            raise TypeError(f"not a transient outcome: {outcome!r}")
        return float(action)

    def send(self, call: Call) -> httpx.Response:
        """
        Send a call, retrying transient trouble; any other answer is returned as it is.

        The first attempt is made directly, and tenacity takes over only after a transient outcome: a call
        that succeeds at once (nearly every poll) costs no retry machinery.
        """
        client = self.get_conn()
        attempts = _Attempts(call, self.settings.backoff)

        def attempt() -> httpx.Response:
            with self._request(call) as request:
                return client.send(request)

        try:
            response = attempt()
        except httpx.TransportError as exc:
            response = Retrying(**self._retrying(attempts))(_replay(exc, attempt))
        else:
            if response.status_code in TRANSIENT_STATUSES:
                response = Retrying(**self._retrying(attempts))(_replay(response, attempt))
        self._calls.resent_ambiguous = attempts.resent_ambiguous
        return response

    async def asend(self, call: Call) -> httpx.Response:
        """Async twin of :meth:`send`, over the connection's shared pool. A 429 pauses every user of it."""
        pool = await self.apool()
        attempts = _Attempts(call, pool.settings.backoff)

        async def attempt() -> httpx.Response:
            await pool.wait_if_paused()
            if call.uploads or call.data:
                with self._request(call) as request:
                    return await pool.send(request)
            url, same_host = self._target(call)
            headers = self._auth_headers if same_host else self._plain_headers
            return await pool.send_call(call.method, url, headers, call.params, call.json)

        try:
            response = await attempt()
        except httpx.TransportError as exc:
            first: _Outcome = exc
        else:
            if response.status_code not in TRANSIENT_STATUSES:
                return response
            first = response
        return await AsyncRetrying(**self._retrying(attempts, pool.pause))(_areplay(first, attempt))

    # ---- reading answers ------------------------------------------------------------------------------

    def check(self, response: httpx.Response, job_id: str | None = None) -> Any:
        """Raise the typed error for an error status; return the JSON body of a success."""
        status = response.status_code
        if status >= 400:
            error = _error_class(status)
            raise self.error(
                error,
                _SUMMARIES.get(error, "request failed"),
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
                vendor_message=response.text[:200] or None,
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
        for _ in range(MAX_POLL_REQUESTS):
            step = self.read_poll(job, self.send(call))
            if isinstance(step, JobStatus):
                return step
            call = step
        raise self._endless_poll(call)

    async def aget_job_status(self, job: Mapping[str, Any]) -> JobStatus:
        """Async twin of :meth:`get_job_status`."""
        call = self.poll_call(job)
        for _ in range(MAX_POLL_REQUESTS):
            step = self.read_poll(job, await self.asend(call))
            if isinstance(step, JobStatus):
                return step
            call = step
        raise self._endless_poll(call)

    def _endless_poll(self, step: Call) -> VendorAPIError:
        return self.error(
            VendorAPIError, f"kept redirecting (last to {_path_only(step.path)})", job_id=step.job_id
        )

    def submit(self, call: Call, key: str) -> str:
        """Send a submit call and return the job reference found under ``key`` (dotted) in the answer."""
        return self.reference(self.check(self.send(call)), key)

    def last_resends(self) -> int:
        """How often this thread's last call was resent after an answer that may have created a job."""
        return getattr(self._calls, "resent_ambiguous", 0)

    async def asubmit(self, call: Call, key: str) -> str:
        """Async twin of :meth:`submit`."""
        return self.reference(self.check(await self.asend(call)), key)

    def reference(self, body: Any, key: str) -> str:
        """The job reference under the dotted ``key`` of a submit's answer; a ``VendorAPIError`` if absent."""
        value: Any = body
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if not isinstance(value, str) or not value:
            raise self.error(
                VendorAPIError,
                f"answered a submit without {key!r}",
                vendor_message=vendor_message(body),
            )
        return value


_SUMMARIES: dict[type, str] = {
    VendorAuthError: "credentials were refused",
    VendorNotFoundError: "job or resource not found",
    VendorRequestError: "request was refused",
    VendorTransientError: "server error",
}


def _error_class(status: int) -> type[VendorAPIError] | type[VendorTransientError]:
    if status in REFUSED_KEY_STATUSES:  # docimprint refuses a bad payment token with 402
        return VendorAuthError
    if status == 404:
        return VendorNotFoundError
    if status == 429 or status >= 500:
        return VendorTransientError
    return VendorRequestError


def parse_body(response: httpx.Response) -> Any:
    """The JSON body, or the text of a body that is not JSON."""
    try:
        return response.json()
    except ValueError:
        return response.text


@functools.lru_cache(maxsize=8)
def _tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """
    One TLS context per CA bundle for the whole process.

    Loading CA certificates costs ~20 ms of CPU, once per client otherwise: a triggerer waiting on hundreds of
    jobs would pay it for every trigger.
    """
    if ca_bundle:
        return ssl.create_default_context(cafile=ca_bundle)
    return httpx.create_ssl_context()


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


def _extra_flag(extra: Mapping[str, Any], key: str, default: bool = True) -> bool:
    """A boolean connection extra; the form and URIs give text ("false" must stay false)."""
    value = extra.get(key, default)
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no", "off")
    return bool(value)


def _origin_text(url: str) -> str:
    """``https://api.mindee.net`` of a URL: where a request went, without its path or query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _name_not_known(exc: BaseException) -> bool:
    """Whether a transport failure comes from a host name that does not resolve."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror | aiohttp.ClientConnectorDNSError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _path_only(path: str) -> str:
    return urlsplit(path).path if "://" in path else path
