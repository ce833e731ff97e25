"""
A hook's connection: its settings, read once into one frozen :class:`ConnSettings`, and its free test.

The connection's host holds the base URL (scheme, port and path prefix honoured; empty means the vendor's
public default), its password the secret, its extra the fields of ``get_provider_info.CONN_FIELDS``.
"""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from airflow_docjobs.exceptions import REFUSED_KEY_STATUSES, DocJobsError, DocJobsInputError, VendorAuthError
from airflow_docjobs.get_provider_info import CONN_FIELDS
from airflow_docjobs.hooks.calls import parse_body, vendor_message
from airflow_docjobs.hooks.retries import Backoff

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_docjobs.hooks.base import DocJobsHook

# Connections a hook keeps open to a vendor (the sync client, and one loop's pool in a triggerer): above
# the vendors' own concurrency limits (Finovox: 10 per key), so a burst of polls never queues for a socket.
MAX_CONNECTIONS = 32


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


def read_settings(hook: DocJobsHook, conn: Any) -> ConnSettings:
    """Everything a request of ``hook`` needs, read from its connection in one place."""
    if conn.conn_type and conn.conn_type != hook.conn_type:
        raise hook.error(
            DocJobsInputError,
            f"connection is of type {conn.conn_type!r}; a {hook.vendor} hook needs a {hook.conn_type!r} one",
        )
    secret = conn.password
    if not secret:
        raise hook.error(DocJobsInputError, f"connection has no {hook.secret_label} in its password field")
    # Fields from the connection form may arrive with Airflow's legacy prefix.
    prefix = f"extra__{hook.conn_type}__"
    extra = {k.removeprefix(prefix): v for k, v in (conn.extra_dejson or {}).items()}

    def number(key: str) -> float:
        value = extra.get(key, CONN_FIELDS[key]["schema"]["default"])
        try:
            found = float(value)
        except (TypeError, ValueError):
            found = -1.0
        if found <= 0:
            raise hook.error(
                DocJobsInputError, f"connection extra {key!r} must be a positive number, got {value!r}"
            )
        return found

    def flag(key: str) -> bool:
        value = extra.get(key, CONN_FIELDS[key]["schema"]["default"])
        if isinstance(value, str):  # the form and URIs give text: "false" must stay false
            return value.strip().lower() not in ("false", "0", "no", "off")
        return bool(value)

    return ConnSettings(
        base_url=_base_url(hook, conn),
        auth=hook.auth_headers(secret, extra),
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


def _base_url(hook: DocJobsHook, conn: Any) -> str:
    host = (conn.host or "").strip()
    if not host:
        return hook.default_base_url
    if "://" not in host:
        host = "https://" + host + (f":{conn.port}" if conn.port else "")
        if conn.schema:
            host += "/" + conn.schema.strip("/")
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise hook.error(DocJobsInputError, f"connection host must be an http(s) base URL, got {host!r}")
    return host.rstrip("/")


def tls(hook: DocJobsHook, settings: ConnSettings) -> ssl.SSLContext | bool:
    """What ``verify`` the clients get: ``False``, or the process's one TLS context for the CA bundle."""
    if not settings.verify:
        return False
    try:
        return _tls_context(settings.ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        raise hook.error(
            DocJobsInputError,
            f"connection extra 'ca_bundle' {settings.ca_bundle!r} is not a readable PEM file: {exc}",
        ) from exc


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


def connection_test(hook: DocJobsHook) -> tuple[bool, str]:
    """
    Ask the vendor, for free, whether it takes the connection's key (``hook.probe_call()``).

    A refused key, an unreachable host and a working connection each get their own message, never the key.
    """
    try:
        settings = hook.settings
        response = hook.send(hook.probe_call())
    except DocJobsInputError as exc:
        return False, str(exc)
    except DocJobsError as exc:
        return False, f"cannot reach {settings.base_url}: {exc}"
    finally:
        hook.close()
    if not vendor_answered(hook, response):
        return False, not_the_vendor(hook, response)
    if response.status_code in REFUSED_KEY_STATUSES:
        return False, hook.error(
            VendorAuthError,
            f"{settings.base_url} refused the {hook.secret_label}",
            status_code=response.status_code,
            vendor_message=vendor_message(parse_body(response)),
        ).args[0]
    return True, (
        f"{hook.vendor}: {settings.base_url} accepted the {hook.secret_label} (HTTP {response.status_code} "
        "for a job that cannot exist)"
    )


def vendor_answered(hook: DocJobsHook, response: httpx.Response) -> bool:
    """
    Whether the probe's answer has the vendor's shape: its error envelope, or its own ``detail`` message.

    A web server, proxy or another API (Airflow's own API server) at a host that lacks the vendor's path
    prefix answers too, with a page or its framework's bare ``{"detail": "Not Found"}``.
    """
    body = parse_body(response)
    if not isinstance(body, dict):
        return False
    if hook.error_envelope is not None:
        return isinstance(body.get(hook.error_envelope), dict)
    detail = body.get("detail")
    try:
        phrase = HTTPStatus(response.status_code).phrase
    except ValueError:
        phrase = ""
    return isinstance(detail, str) and bool(detail.strip()) and detail.strip() != phrase


def not_the_vendor(hook: DocJobsHook, response: httpx.Response) -> str:
    """What answered the connection test instead of the vendor, and the base URL (path prefix included) it needs."""
    kind = response.headers.get("content-type", "no content type").split(";")[0]
    excerpt = " ".join(response.text.split())[:80]
    shape = (
        f"a JSON {hook.error_envelope!r} object"
        if hook.error_envelope
        else "a JSON 'detail' message of its own"
    )
    return str(
        hook.error(
            DocJobsInputError,
            f"{response.request.url} answered HTTP {response.status_code} ({kind}: {excerpt!r}), which is not the "
            f"{hook.vendor} API's answer ({shape}). The connection's host must be the API's base URL, its path "
            f"prefix included: {hook.default_base_url} for {hook.vendor} itself, http://<host>:<port>/{hook.conn_type} "
            "for the emulator",
        )
    )
