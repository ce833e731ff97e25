"""
The retry arithmetic, without a server: ``Retry-After`` in both of its forms and equal-jitter exponential
backoff (doubling, capped). What bounds the retries (attempts, the wall-clock deadline) is tested through
the hooks against the emulator, in ``test_hooks_retries.py``.
"""

from __future__ import annotations

import email.utils
import random
import time

import httpx
import pytest

from airflow_docjobs.hooks.retries import Backoff, retry_after_seconds


def http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


def answer(status: int, retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return httpx.Response(
        status, headers=headers, request=httpx.Request("GET", "http://vendor.test/v1/jobs/1")
    )


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (lambda: "120", 120.0),
        (lambda: "0", 0.0),
        (lambda: "1.5", 1.5),
        (lambda: "-3", 0.0),
        (lambda: http_date(90), pytest.approx(90, abs=2)),  # an HTTP date has whole seconds
        (lambda: http_date(-90), 0.0),
        (lambda: "soon", None),
        (lambda: "", None),
        (lambda: None, None),
    ],
    ids=["seconds", "zero", "fraction", "negative", "date", "date passed", "garbage", "empty", "absent"],
)
def test_retry_after_is_read_as_seconds_in_both_forms(header, expected):
    assert retry_after_seconds(answer(429, header())) == expected


@pytest.fixture
def seeded():
    """A fixed random sequence for the jitter, put back afterwards."""
    state = random.getstate()
    random.seed(20261125)
    yield
    random.setstate(state)


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0), (6, 30.0), (12, 30.0)],
    ids=lambda value: str(value),
)
def test_backoff_doubles_with_equal_jitter_up_to_the_cap(seeded, attempt, ceiling):
    delays = [Backoff(base_delay=1.0, max_delay=30.0).delay(attempt, None) for _ in range(200)]
    # Equal jitter: never below half the backoff, never above it...
    assert ceiling / 2 <= min(delays)
    assert max(delays) <= ceiling
    # ... and spread over that whole half, so a herd of clients does not retry in step.
    assert min(delays) < ceiling * 0.55
    assert max(delays) > ceiling * 0.95


def test_a_vendors_retry_after_replaces_the_backoff_even_above_the_cap():
    policy = Backoff(base_delay=1.0, max_delay=30.0)
    assert policy.delay(1, 7.0) == 7.0
    assert policy.delay(5, 0.0) == 0.0
    assert policy.delay(1, 120.0) == 120.0  # the deadline bounds it, not retry_max_delay
