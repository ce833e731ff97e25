"""
The connection form on Airflow < 3.2, which reads it from two hook classmethods.

It reads them from the hook class's own ``__dict__`` only, rather than from the provider info's
``conn-fields`` and ``ui-field-behaviour`` (Airflow 3.2+). Both ways are built from the same table,
``get_provider_info.conn_fields``.
"""

from __future__ import annotations

from typing import Any

from airflow_docjobs.get_provider_info import conn_fields, field_behaviour


def get_connection_form_widgets(hook: type) -> dict[str, Any]:
    """The extra fields as WTForms fields (Flask AppBuilder's UI of Airflow 2.11)."""
    from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import BooleanField, IntegerField, StringField

    widgets: dict[str, Any] = {}
    for name, field in conn_fields(hook.conn_type).items():  # type: ignore[attr-defined]
        kind, default = field["schema"]["type"][0], field["schema"].get("default")
        label, description = lazy_gettext(field["label"]), field["description"]
        if kind == "boolean":
            widgets[name] = BooleanField(label, description=description, default=default)
        elif kind == "integer":
            widgets[name] = IntegerField(
                label, widget=BS3TextFieldWidget(), description=description, default=default
            )
        else:  # numbers and text: the hook reads "2.5" as well as 2.5
            widgets[name] = StringField(
                label, widget=BS3TextFieldWidget(), description=description, default=default
            )
    return widgets


def get_ui_field_behaviour(hook: type) -> dict[str, Any]:
    """Hidden fields, labels and placeholders, with the keys the hook method returns."""
    behaviour = field_behaviour(hook.secret_label, hook.default_base_url)  # type: ignore[attr-defined]
    return {key.replace("-", "_"): value for key, value in behaviour.items()}
