"""
What each vendor's result says, read for the tables.

A result gives its analysis kind, a few typed headline columns and one row per extracted field.

A reader is the only place that knows a vendor's result shape; the operator and the tables stay generic.
Every field row carries a confidence in ``[0, 1]`` where the vendor gives one: Mindee already reports
fractions, myBiros percentages (divided by 100 here), Finovox none.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_docjobs.hooks.biros import BirosHook
from airflow_docjobs.hooks.docimprint import DocimprintHook
from airflow_docjobs.hooks.finovox import FinovoxHook
from airflow_docjobs.hooks.mindee import MindeeHook
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
# Parts of a Mindee field that locate it rather than say what was read.
_MINDEE_META = frozenset({"confidence", "polygon", "bounding_box", "page_id", "raw_value"})


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


class FinovoxReader(VendorReader):
    """Finovox results: a document's fraud analysis (``global_risk``) or a case decision."""

    vendor = FinovoxHook.conn_type
    hook_class = FinovoxHook
    reference_field = "retrieve_token"

    def job_extras(self, analysis: str | None) -> dict[str, Any]:
        """The ``analysis`` (``document`` or ``case``) a Finovox job reference carries."""
        return {"analysis": analysis} if analysis else {}

    def analysis_of_job(self, job: Mapping[str, Any]) -> str | None:
        """The job reference's ``analysis``, ``document`` by default."""
        return str(job.get("analysis") or "document")

    def matches(self, result: Mapping[str, Any]) -> bool:
        """A document analysis (``global_risk``) or a case answer (``decision``, ``explanation``...)."""
        return "global_risk" in result or any(k in result for k in ("decision", "explanation", "share_link"))

    def analysis_of_result(self, result: Mapping[str, Any]) -> str | None:
        """``document`` for a result with ``global_risk``, else ``case``."""
        return "document" if "global_risk" in result else "case"

    def input_name(self, result: Mapping[str, Any]) -> str | None:
        """The ``name`` Finovox echoes."""
        return _text(result.get("name"))

    def headlines(self, analysis: str, result: Mapping[str, Any]) -> dict[str, Any]:
        """``global_risk`` and the case decision's ``status``."""
        decision = _mapping(result.get("decision"))
        return {
            "global_risk": _text(result.get("global_risk")),
            "decision_status": _text(decision.get("status")),
        }

    def fields(self, analysis: str, result: Mapping[str, Any]) -> Iterator[Field]:
        """The risk signals (``*_risk``, ``document_quality``, ``software``) and the decision's values."""
        # The risk signals: every sub-score, plus what they were read from.
        for key, value in result.items():
            if (key.endswith("_risk") or key in ("document_quality", "software")) and _scalar(value):
                yield Field(None, key, _as_text(value))
        decision = result.get("decision")
        if isinstance(decision, Mapping):
            for key, value in decision.items():
                if _scalar(value):
                    yield Field(None, f"decision.{key}", _as_text(value))


class MindeeReader(VendorReader):
    """Mindee results: the document a completed job redirects to."""

    vendor = MindeeHook.conn_type
    hook_class = MindeeHook
    reference_field = "job_id"

    def analysis_of_job(self, job: Mapping[str, Any]) -> str | None:
        """``{account}/{product}/{version}`` of the job reference; ``None`` without product or version."""
        if not job.get("product") or not job.get("version"):
            return None
        return mindee_analysis(job["product"], job["version"], job.get("account") or "mindee")

    def matches(self, result: Mapping[str, Any]) -> bool:
        """A ``document`` with an ``inference``."""
        document = result.get("document")
        return isinstance(document, Mapping) and isinstance(document.get("inference"), Mapping)

    def analysis_of_result(self, result: Mapping[str, Any]) -> str | None:
        """``{account}/{name}/v{major}`` of the inference's product, or ``None``."""
        # The inference names "mindee/invoices" and "4.11"; the job reference said "mindee/invoices/v4".
        product = result["document"]["inference"].get("product") or {}
        name, version = product.get("name"), str(product.get("version") or "")
        if not isinstance(name, str) or "/" not in name or not version:
            return None
        return f"{name}/v{version.split('.')[0]}"

    def input_name(self, result: Mapping[str, Any]) -> str | None:
        """The document's ``name``."""
        return _text(result["document"].get("name"))

    @staticmethod
    def _prediction(result: Mapping[str, Any]) -> Mapping[str, Any]:
        document = _mapping(result.get("document"))
        inference = _mapping(document.get("inference"))
        return _mapping(inference.get("prediction"))

    def headlines(self, analysis: str, result: Mapping[str, Any]) -> dict[str, Any]:
        """``total_amount``, ``total_net`` and ``total_tax`` of the prediction, as numbers."""
        prediction = self._prediction(result)
        totals = {}
        for name in ("total_amount", "total_net", "total_tax"):
            field = prediction.get(name)
            totals[name] = _number(field.get("value")) if isinstance(field, Mapping) else None
        return totals

    def fields(self, analysis: str, result: Mapping[str, Any]) -> Iterator[Field]:
        """One row per prediction field; list items are numbered (``line_items[0]``)."""
        for name, value in self._prediction(result).items():
            if isinstance(value, list):
                for index, item in enumerate(value):
                    yield from _mindee_field(f"{name}[{index}]", item)
            else:
                yield from _mindee_field(name, value)


class DocimprintReader(VendorReader):
    """docimprint results: a job's final JSON; every job the provider submits is an ``extract``."""

    vendor = DocimprintHook.conn_type
    hook_class = DocimprintHook
    reference_field = "job_id"
    # A job reference is only its id; every per-document job the provider submits is an extract.
    default_analysis = "extract"

    def matches(self, result: Mapping[str, Any]) -> bool:
        """A job JSON: ``job_id`` with ``bundle_id``, ``manifest_sha256`` or ``status``."""
        return "job_id" in result and any(k in result for k in ("bundle_id", "manifest_sha256", "status"))

    def headlines(self, analysis: str, result: Mapping[str, Any]) -> dict[str, Any]:
        """``bundle_id`` and ``manifest_sha256``."""
        return {
            "bundle_id": _text(result.get("bundle_id")),
            "manifest_sha256": _text(result.get("manifest_sha256")),
        }


class BirosReader(VendorReader):
    """myBiros results: a predicted document with its entities per page."""

    vendor = BirosHook.conn_type
    hook_class = BirosHook
    reference_field = "document_id"

    def analysis_of_job(self, job: Mapping[str, Any]) -> str | None:
        """The job reference's ``service_id``."""
        return _text(job.get("service_id"))

    def matches(self, result: Mapping[str, Any]) -> bool:
        """A ``document`` with a ``status``, and ``document_pages`` or ``service``."""
        document = result.get("document")
        return (
            isinstance(document, Mapping)
            and "status" in document
            and ("document_pages" in result or "service" in result)
        )

    def analysis_of_result(self, result: Mapping[str, Any]) -> str | None:
        """The ``service`` the result names."""
        return _text(result.get("service"))

    def input_name(self, result: Mapping[str, Any]) -> str | None:
        """The document's ``original_name``."""
        return _text(result["document"].get("original_name"))

    def headlines(self, analysis: str, result: Mapping[str, Any]) -> dict[str, Any]:
        """The document's ``status`` and ``revision_status``."""
        document = _mapping(result.get("document"))
        return {
            "document_status": _text(document.get("status")),
            "revision_status": _text(document.get("revision_status")),
        }

    def fields(self, analysis: str, result: Mapping[str, Any]) -> Iterator[Field]:
        """One row per entity on each page, its confidence turned from a percentage into a fraction."""
        for position, page in enumerate(result.get("document_pages") or []):
            if not isinstance(page, Mapping):
                continue
            number = page.get("page_index", position)
            for name, found in (page.get("entities") or {}).items():
                # A single-valued field is one entity object, a multi-valued one a list of them.
                for entity in found if isinstance(found, list) else [found]:
                    if isinstance(entity, Mapping) and _scalar(entity.get("text")):
                        confidence = _number(entity.get("confidence"))
                        yield Field(
                            number if isinstance(number, int) else position,
                            name,
                            _as_text(entity["text"]),
                            None if confidence is None else round(confidence / 100, 6),
                        )


READERS: dict[str, VendorReader] = {
    reader.vendor: reader for reader in (FinovoxReader(), MindeeReader(), DocimprintReader(), BirosReader())
}


def vendor_id(name: Any) -> str | None:
    """``finovox``, ``mindee``, ``docimprint`` or ``biros`` for a connection type or display name."""
    if not isinstance(name, str):
        return None
    folded = name.strip().casefold()
    for reader in READERS.values():
        if folded in (
            reader.vendor,
            reader.hook_class.vendor.casefold(),
            reader.hook_class.hook_name.casefold(),
        ):
            return reader.vendor
    return None


def infer_vendor(result: Mapping[str, Any]) -> str | None:
    """The vendor whose result shape ``result`` has (single results carry no vendor name)."""
    # Mindee and myBiros both have a "document": the more specific shape is tried first.
    for vendor in ("mindee", "biros", "docimprint", "finovox"):
        if READERS[vendor].matches(result):
            return vendor
    return None


def mindee_analysis(product: str, version: str | int, account: str = "mindee") -> str:
    """The analysis kind of a Mindee product, as rows name it: ``mindee/invoices/v4``."""
    version = f"v{version}" if str(version).isdigit() else str(version)
    return f"{account}/{product}/{version}"


def _mindee_field(name: str, field: Any) -> Iterator[Field]:
    if _scalar(field):
        yield Field(None, name, _as_text(field))
        return
    if not isinstance(field, Mapping):
        return
    page = field.get("page_id") if isinstance(field.get("page_id"), int) else None
    confidence = _number(field.get("confidence"))
    if "value" in field:
        if _scalar(field["value"]):
            yield Field(page, name, _as_text(field["value"]), confidence)
        return
    # An object without one value (a line item, the locale, payment details): one row per part read.
    for key, value in field.items():
        if key not in _MINDEE_META and _scalar(value):
            yield Field(page, f"{name}.{key}", _as_text(value), confidence)


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) and value != ""


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    """A JSON object, or an empty one for anything else (a missing or malformed part of a result)."""
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
