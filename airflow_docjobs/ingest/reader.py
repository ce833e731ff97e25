"""
What every vendor's reader shares: the field row, the reader's interface and the JSON helpers.

A reader is the only place that knows a vendor's result shape (see :mod:`~airflow_docjobs.ingest.vendors`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_docjobs.results import HASHED

if TYPE_CHECKING:
    from airflow_docjobs.hooks.base import DocJobsHook

# The typed headline columns of ``docjobs_results``, in table order; every reader fills a subset.
HEADLINES = (
    "global_risk",
    "decision_status",
    "total_amount",
    "total_net",
    "total_tax",
    "bundle_id",
    "manifest_sha256",
    "document_status",
    "revision_status",
)


@dataclass(frozen=True)
class Field:
    """One extracted value: its page (when the vendor says), name, value as text, confidence in [0, 1]."""

    page: int | None
    name: str
    value: str
    confidence: float | None = None


class VendorReader:
    """
    How one vendor's results read.

    ``vendor`` is the connection type (``finovox``, ``mindee``...), the name rows carry; ``hook_class`` tells
    the display name landed records use and which job keys are secret.
    """

    vendor: ClassVar[str]
    hook_class: ClassVar[type[DocJobsHook]]
    # The job key a sensor's outcome ``reference`` fills (the sensor's ``reference_field``).
    reference_field: ClassVar[str]
    default_analysis: ClassVar[str | None] = None

    def analysis_of_job(self, job: Mapping[str, Any]) -> str | None:
        """The analysis kind a landed job reference names, or ``None`` when it names none."""
        return self.default_analysis

    def matches(self, result: Mapping[str, Any]) -> bool:
        """Whether a bare result JSON (a single-mode sensor's return) has this vendor's shape."""
        raise NotImplementedError

    def analysis_of_result(self, result: Mapping[str, Any]) -> str | None:
        """The analysis kind read from a bare result, for single results given without ``analysis``."""
        return self.default_analysis

    def input_name(self, result: Mapping[str, Any]) -> str | None:
        """The document's name as the vendor echoes it, for single results given without ``inputs``."""
        return None

    def headlines(self, analysis: str, result: Mapping[str, Any]) -> dict[str, Any]:
        """Typed headline columns of a result; none by default."""
        return {}

    def fields(self, analysis: str, result: Mapping[str, Any]) -> Iterator[Field]:
        """One row per extracted field of a result; none by default."""
        return iter(())

    def public_reference(self, reference: str, analysis: str | None) -> dict[str, Any]:
        """A job reference fit for a table, built from an outcome's reference (secret tokens hashed)."""
        # The same names and hash as DocJobsHook.public_job, so a row reads the same with or without a record.
        if self.reference_field in self.hook_class.secret_job_keys:
            # A sensor's outcome names a secret token by its digest already (results.public_reference).
            digest = reference.removeprefix(HASHED)
            if digest == reference:
                digest = hashlib.sha256(reference.encode()).hexdigest()
            job = {f"{self.reference_field}_sha256": digest}
        else:
            job = {self.reference_field: reference}
        return job | self.job_extras(analysis)

    def job_extras(self, analysis: str | None) -> dict[str, Any]:
        """Job reference fields besides the reference, for :meth:`public_reference`; none by default."""
        return {}


def scalar(value: Any) -> bool:
    """A non-empty JSON scalar (a string, number or boolean)."""
    return isinstance(value, (str, int, float, bool)) and value != ""


def as_text(value: Any) -> str:
    """A scalar as the text a row stores: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def mapping(value: Any) -> Mapping[str, Any]:
    """A JSON object, or an empty one for anything else (a missing or malformed part of a result)."""
    return value if isinstance(value, Mapping) else {}


def text(value: Any) -> str | None:
    """A non-empty string, or ``None``."""
    return value if isinstance(value, str) and value else None


def number(value: Any) -> float | None:
    """A number (from a number or numeric text), or ``None``."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
