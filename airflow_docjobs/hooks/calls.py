"""
The values a vendor hook works with, all pure.

A request described without sending it (:class:`Call`), a job's state read from one poll
(:class:`JobStatus`), and the vendor's own words in an answer.
"""

from __future__ import annotations

import html
import json
import re
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import httpx

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from airflow_docjobs.hooks.inputs import Upload

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
    data: Mapping[str, str | list[str]] | None = None  # a list is a repeated form field
    uploads: tuple[Upload, ...] = ()
    job_id: str | None = None
    idempotent: bool | None = None

    @contextmanager
    def request(self, url: str, headers: Mapping[str, str]) -> Iterator[httpx.Request]:
        """The request of one attempt; uploads are opened anew, so a resend streams them again."""
        with ExitStack() as stack:
            files = [
                (u.field, (u.filename, stack.enter_context(u.open()), u.content_type)) for u in self.uploads
            ]
            yield httpx.Request(
                self.method,
                url,
                params=self.params,
                headers=headers,
                json=self.json,
                data=self.data,
                files=files or None,
            )

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
    :param fraction: while pending, the share of the work done (0 to 1), if the vendor says
        (docimprint's ``progress_pct``); the batch's poll schedule asks again sooner when it is high.
    """

    state: Literal["pending", "succeeded", "failed"]
    result: Any = None
    message: str | None = None
    progress: str | None = None
    code: str | None = None
    fraction: float | None = None

    @property
    def terminal(self) -> bool:
        """Whether the job has ended, in success or failure."""
        return self.state != PENDING


def vendor_message(body: Any) -> str | None:
    """Find the vendor's own error message in the common shapes of an error body."""
    if isinstance(body, str):
        return _text_message(body)
    if not isinstance(body, dict):
        return None
    for key in ("message", "detail", "details", "error", "api_request"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value[:500]
        if isinstance(value, dict):
            # Mindee's details may be per field, {"document": ["error message"]}: those are its words.
            found = vendor_message(value) or (_per_field(value) if key in ("detail", "details") else None)
            if found:
                return found
        if isinstance(value, list) and value:
            return json.dumps(value)[:500]
    return None


def _per_field(details: dict[str, Any]) -> str | None:
    """``{"document": ["error message"]}`` as ``document: error message``."""
    parts = [
        f"{field}: {', '.join(map(str, words)) if isinstance(words, list) else words}"
        for field, words in details.items()
    ]
    return "; ".join(parts)[:500] or None


_HTML = re.compile(r"<(!doctype\s+html|html|head|body)\b", re.IGNORECASE)
_HEADINGS = re.compile(r"<(title|h1)\b[^>]*>(.*?)</\1\s*>", re.IGNORECASE | re.DOTALL)


def _text_message(text: str) -> str | None:
    """A body that is not JSON: its text, or for an HTML page (a gateway's 502) one line from its title."""
    text = text.strip()
    if not _HTML.search(text[:1000]):
        return text[:500] or None
    headings: list[str] = []
    for _, inner in _HEADINGS.findall(text):
        words = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", inner)).split())
        if words and words not in headings:
            headings.append(words)
    return ("an HTML page" + (": " + " - ".join(headings) if headings else ""))[:200]


def parse_body(response: httpx.Response) -> Any:
    """The JSON body, or the text of a body that is not JSON."""
    try:
        return response.json()
    except ValueError:
        return response.text
