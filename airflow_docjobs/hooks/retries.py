"""
Retries of one request, on tenacity: what is retried, how long to wait, when to stop, what a resend may cost.

The sync and async sends of :class:`~airflow_docjobs.hooks.base.DocJobsHook` share these rules; only the
attempt differs. The first attempt is made by the send itself, and tenacity takes over only after a
transient outcome (:func:`replay` hands it that outcome as its first attempt).
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import socket
import sys
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

import httpx
from tenacity import RetryCallState, stop_after_attempt
from tenacity.stop import stop_base

from airflow_docjobs import metrics
from airflow_docjobs.exceptions import VendorTransientError, VendorUnreachableError
from airflow_docjobs.hooks.calls import parse_body, vendor_message

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from airflow_docjobs.hooks.base import DocJobsHook
    from airflow_docjobs.hooks.calls import Call

# Answers worth the same request again. A plain 500 is not among them: for most vendors it is a bug on
# their side that a retry will not fix, and Finovox uses it for "this folder failed" (see finovox.py).
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
# A submit creates a job that costs money, so it is sent again only after an answer that says the vendor
# did not take it (rate limited, unavailable) or when no connection was made. After a 502, a 504 or a
# read timeout the job may exist: resending could pay for it twice.
NOT_TAKEN_STATUSES = frozenset({429, 503})
NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# How an async call waits out a backoff: ``asyncio.sleep``, unless the task it runs in says otherwise. A
# batch's trigger lends the poll's slot to another job's poll meanwhile (``_Batch._backoff``): a vendor
# answering 503 to 1 % of polls would otherwise keep several of a batch's slots asleep.
BACKOFF_SLEEP: ContextVar[Callable[[float], Awaitable[None]]] = ContextVar(
    "docjobs_backoff_sleep", default=asyncio.sleep
)


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


@dataclass
class Attempts:
    """Retry bookkeeping for one call, shared by the sync and async sends."""

    call: Call
    policy: Backoff
    started: float = field(default_factory=time.monotonic)
    resent_ambiguous: int = 0


Outcome = httpx.Response | httpx.TransportError


class _PastDeadline(stop_base):
    """
    Stop when the next wait would end past the call's wall-clock deadline.

    tenacity's ``stop_before_delay`` counts from its own start; the deadline counts from the call's first
    attempt, which the sends make before tenacity takes over (see :meth:`DocJobsHook.send`).
    """

    def __init__(self, attempts: Attempts) -> None:
        self.attempts = attempts

    def __call__(self, retry_state: RetryCallState) -> bool:
        spent = time.monotonic() - self.attempts.started
        return retry_state.upcoming_sleep > self.attempts.policy.deadline - spent


class RetryRules:
    """
    The tenacity arguments of one call; the sync and async sends share them, only the attempt differs.

    ``retry`` decides on each outcome (and raises at once what a retry cannot fix), ``wait`` honours
    ``Retry-After`` or backs off, ``stop`` spends attempts and the deadline, ``before_sleep`` logs and counts
    the resend, ``give_up`` raises the typed error once the budget is spent.
    """

    def __init__(
        self, hook: DocJobsHook, attempts: Attempts, pause: Callable[[float], None] | None = None
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
            if not transient(self.attempts.call, outcome):
                return False
        elif not isinstance(outcome, httpx.TransportError):
            return False
        call, hook = self.attempts.call, self.hook
        status, what = describe(outcome)
        if isinstance(outcome, httpx.TransportError) and name_not_known(outcome):
            # A host name that does not resolve is a typo or a missing DNS: five retries will not help.
            raise hook.error(
                VendorUnreachableError,
                f"could not resolve the host of {origin_text(str(outcome.request.url))}",
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
        _, what = describe(outcome)
        if _ambiguous(call, outcome):
            # A gateway's 502/504 or a lost answer usually means the vendor never took the job, and a
            # nightly run that fails on one hiccup pages a person; but it may have: say so, and count it.
            self.attempts.resent_ambiguous += 1
            metrics.count(hook.conn_type, "resent_submits")
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
            path_only(call.path),
            retry_state.attempt_number,
            delay,
        )
        if isinstance(outcome, httpx.Response) and outcome.status_code == 429:
            metrics.count(hook.conn_type, "throttled")
            if self.pause is not None:
                self.pause(delay)

    def give_up(self, retry_state: RetryCallState) -> NoReturn:
        """Raise the typed error naming the origin once attempts or the deadline are spent."""
        outcome = _outcome(retry_state)
        status, what = describe(outcome)
        message = vendor_message(parse_body(outcome)) if isinstance(outcome, httpx.Response) else str(outcome)
        raise self.hook.error(
            VendorTransientError,
            f"still failing after {retry_state.attempt_number} attempts ({what})",
            status_code=status,
            job_id=self.attempts.call.job_id,
            vendor_message=message,
        ) from (outcome if isinstance(outcome, Exception) else None)


def transient(call: Call, response: httpx.Response) -> bool:
    """
    Whether an answer is worth the same request again: a transient status, or, to a read, a page of HTML.

    A gateway or proxy in front of the vendor may answer a poll 200 with its own HTML page (no vendor API
    answers HTML): it passes like a 502, so the hook sends the read again rather than fail the poll.
    """
    if response.status_code in TRANSIENT_STATUSES:
        return True
    return (
        call.repeatable
        and response.status_code < 300
        and response.headers.get("content-type", "").startswith("text/html")
    )


def _outcome(retry_state: RetryCallState) -> Any:
    """What an attempt ended with: the response it returned or the exception it raised."""
    future = retry_state.outcome
    assert future is not None
    return future.exception() if future.failed else future.result()


def describe(outcome: Outcome) -> tuple[int | None, str]:
    """The status of a transient outcome, if any, and a phrase naming what happened and where."""
    origin = origin_text(str(outcome.request.url))
    if isinstance(outcome, httpx.Response):
        page = " with an HTML page" if outcome.status_code < 300 else ""
        return outcome.status_code, f"{origin} answered HTTP {outcome.status_code}{page}"
    if isinstance(outcome, NOT_SENT_ERRORS):
        return None, f"could not connect to {origin} ({type(outcome).__name__})"
    return None, f"no complete answer from {origin} ({type(outcome).__name__})"


def _ambiguous(call: Call, outcome: Outcome) -> bool:
    """Whether resending after this outcome may create a second job (a submit that may have been taken)."""
    if call.repeatable:
        return False
    if isinstance(outcome, httpx.Response):
        return outcome.status_code not in NOT_TAKEN_STATUSES
    return not isinstance(outcome, NOT_SENT_ERRORS)


async def backoff_sleep(seconds: float) -> None:
    """Wait out an async call's backoff as its task's :data:`BACKOFF_SLEEP` says."""
    await BACKOFF_SLEEP.get()(seconds)


def replay(first: Outcome, attempt: Callable[[], httpx.Response]) -> Callable[[], httpx.Response]:
    """``attempt``, except that its first call gives back ``first``: the outcome the send already has."""
    pending = [first]

    def again() -> httpx.Response:
        return _given(pending.pop()) if pending else attempt()

    return again


def areplay(
    first: Outcome, attempt: Callable[[], Awaitable[httpx.Response]]
) -> Callable[[], Awaitable[httpx.Response]]:
    """Async twin of :func:`replay`."""
    pending = [first]

    async def again() -> httpx.Response:
        return _given(pending.pop()) if pending else await attempt()

    return again


def _given(outcome: Outcome) -> httpx.Response:
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


def origin_text(url: str) -> str:
    """``https://api.mindee.net`` of a URL: where a request went, without its path or query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def name_not_known(exc: BaseException) -> bool:
    """Whether a transport failure comes from a host name that does not resolve."""
    # aiohttp's error only where aiohttp is loaded (a triggerer): a worker's hooks never import it.
    aiohttp = sys.modules.get("aiohttp")
    kinds = (socket.gaierror, aiohttp.ClientConnectorDNSError) if aiohttp else (socket.gaierror,)
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kinds):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def path_only(path: str) -> str:
    """The path of a call's path or URL, for logs: no host, no query."""
    return urlsplit(path).path if "://" in path else path
