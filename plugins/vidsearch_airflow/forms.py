"""Trigger forms generated from the library's parameter models, so the form and the model cannot drift."""

from __future__ import annotations

from airflow.sdk import Param
from vidsearch.params import form_schema


def ingest_form() -> dict[str, Param]:
    """`video_ingest`'s params: one `Param` per `IngestParams.FORM_FIELDS` entry, with its schema."""
    return {name: Param(**schema) for name, schema in form_schema().items()}
