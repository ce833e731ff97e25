"""
Mindee v2 results, read for the tables: the inference at a processed job's ``result_url``.

The analysis is the model's id. An extraction gives one row per field, objects and lists flattened to dotted
paths as for v1 (``supplier_address.city``, ``line_items[0].quantity``); the other products give their few
values (``classification.document_type``, ``splits[0].document_type``, ``crops[0].object_type``, one
``pages[n].content`` per OCR page).

v2 reports confidence as a label, not a number; the ``confidence`` column gets the SDK's order of the labels
scaled to ``[0, 1]``: ``Certain`` 1.0, ``High`` 0.75, ``Medium`` 0.5, ``Low`` 0.25, and none when the
enqueue did not ask for confidence.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from airflow_docjobs.hooks.mindee_v2 import MindeeV2Hook
from airflow_docjobs.ingest.reader import Field, VendorReader, as_text, mapping, number, scalar, text

# The SDK's FieldConfidence order (int() of Certain is 4, of Low 1), divided by 4.
CONFIDENCE = {"Certain": 1.0, "High": 0.75, "Medium": 0.5, "Low": 0.25}


class MindeeV2Reader(VendorReader):
    """Mindee v2 results: ``{"inference": {"model", "file", "result"...}}``."""

    vendor = MindeeV2Hook.conn_type
    hook_class = MindeeV2Hook
    reference_field = "job_id"

    def analysis_of_job(self, job: Mapping[str, Any]) -> str | None:
        """The job reference's ``model_id``."""
        return text(job.get("model_id"))

    def job_extras(self, analysis: str | None) -> dict[str, Any]:
        """The ``model_id`` a job reference carries."""
        return {"model_id": analysis} if analysis else {}

    def matches(self, result: Mapping[str, Any]) -> bool:
        """An ``inference`` with a ``model`` and a ``result``."""
        inference = result.get("inference")
        return isinstance(inference, Mapping) and "model" in inference and "result" in inference

    def analysis_of_result(self, result: Mapping[str, Any]) -> str | None:
        """The inference's model id."""
        return text(mapping(mapping(result.get("inference")).get("model")).get("id"))

    def input_name(self, result: Mapping[str, Any]) -> str | None:
        """The file's ``name``."""
        return text(mapping(mapping(result.get("inference")).get("file")).get("name"))

    @staticmethod
    def _result(result: Mapping[str, Any]) -> Mapping[str, Any]:
        return mapping(mapping(result.get("inference")).get("result"))

    def headlines(self, analysis: str, result: Mapping[str, Any]) -> dict[str, Any]:
        """An extraction's ``total_amount``, ``total_net`` and ``total_tax``, as numbers."""
        fields = mapping(self._result(result).get("fields"))
        return {
            name: number(mapping(fields.get(name)).get("value"))
            for name in ("total_amount", "total_net", "total_tax")
        }

    def fields(self, analysis: str, result: Mapping[str, Any]) -> Iterator[Field]:
        """One row per extracted field, or the other products' values."""
        found = self._result(result)
        if isinstance(found.get("fields"), Mapping):
            for name, field in found["fields"].items():
                yield from _field(name, field)
            return
        for name, value in found.items():
            yield from _values(name, value)


def _field(name: str, field: Any) -> Iterator[Field]:
    """A v2 field: a simple one (``value``), an object (``fields``) or a list (``items``)."""
    if not isinstance(field, Mapping):
        return
    if "items" in field:
        for index, item in enumerate(field["items"] or []):
            yield from _field(f"{name}[{index}]", item)
    elif "fields" in field:
        for key, inner in mapping(field["fields"]).items():
            yield from _field(f"{name}.{key}", inner)
    elif scalar(field.get("value")):
        locations, confidence = field.get("locations") or [], field.get("confidence")
        page = mapping(locations[0]).get("page") if isinstance(locations, list) and locations else None
        yield Field(
            page if isinstance(page, int) else None,
            name,
            as_text(field["value"]),
            CONFIDENCE.get(confidence) if isinstance(confidence, str) else None,
        )


def _values(name: str, value: Any) -> Iterator[Field]:
    """The values of a classification, crop, OCR or split result; locations and words left out."""
    if isinstance(value, list):
        if value and all(scalar(v) for v in value):  # a split's page_range
            yield Field(None, name, as_text(value))
            return
        for index, item in enumerate(value):
            yield from _values(f"{name}[{index}]", item)
    elif isinstance(value, Mapping):
        for key, inner in value.items():
            if key not in ("location", "polygon", "words", "extraction_response"):
                yield from _values(f"{name}.{key}", inner)
    elif scalar(value):
        yield Field(None, name, as_text(value))
