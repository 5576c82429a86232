"""`video_ingest`'s trigger form, `IngestParams` and a channel's `IngestSettings` are one definition.

The form and the channel settings are generated from `IngestParams`; these tests check that the DAG
really serves the generated form, and that all three accept and reject the same values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError
from vidsearch.channels import IngestSettings
from vidsearch.params import COLLECTION_NAME_PATTERN, DEFAULT_COLLECTION, IngestParams, form_schema

DAGS = Path(__file__).resolve().parents[2] / "dags"

# field -> values each of the three must agree on (accepted by all, or rejected by all).
SAMPLES: dict[str, list[Any]] = {
    "source": ["a.mp4", "s3://bucket/v.mp4", "", 3],
    "collection": ["default", "retail_cams", "a" * 63, "a" * 64, "Retail", "9lives", "with-dash", ""],
    "segment_seconds": ["auto", 2.5, 3600, 3600.5, 0, -1, "auto2", "x", "30"],
    "sample_fps": [0.5, 1, 120, 120.5, 0, -2, "x"],
    "sampling": ["fps", "keyframes", "scenes", ""],
    "time_limit_seconds": [None, 30, 0.1, 0, -5, "x"],
    "score_threshold": [0, 0.7, 1, 1.01, -0.1, "x"],
    "detector_model": ["facebook/detr-resnet-50", "/models/detr", ""],
    "embedder_model": ["openai/clip-vit-base-patch32", ""],
    "transcribe": [True, False, "x", 3],
    "asr_model": ["openai/whisper-base", "/models/whisper-tiny", ""],
}


@pytest.fixture(scope="module")
def form() -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    dagbag = DagBag(dag_folder=str(DAGS / "video_ingest.py"))
    assert dagbag.import_errors == {}
    return dagbag.dags["video_ingest"].params


def _accepts_schema(schema: dict[str, Any], value: Any) -> bool:
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError:
        return False
    return True


def _accepts_model(model: Any, **values: Any) -> bool:
    try:
        model(**values)
    except ValidationError:
        return False
    return True


def test_the_dag_serves_the_form_generated_from_the_model(form):
    assert list(form) == list(IngestParams.FORM_FIELDS)
    expected = form_schema()
    for name in IngestParams.FORM_FIELDS:
        param = form.get_param(name)
        field = IngestParams.model_fields[name]
        served = {**param.schema, "description": param.description}
        if not field.is_required():
            served["default"] = param.value
        assert served == expected[name], name
        assert param.description == field.description and param.schema["title"] == field.title
        assert param.value == field.default if not field.is_required() else not param.has_value, name
    # The pattern, anchored against a final newline (the form checks it with re.search).
    assert form.get_param("collection").schema["pattern"] == COLLECTION_NAME_PATTERN + r"(?!\n)"
    assert form.get_param("collection").value == DEFAULT_COLLECTION


def test_every_form_field_is_sampled():
    assert set(SAMPLES) == set(IngestParams.FORM_FIELDS)


@pytest.mark.parametrize("name", list(SAMPLES))
def test_form_model_and_channel_settings_accept_the_same_values(name):
    schema = {k: v for k, v in form_schema()[name].items() if k != "default"}
    for value in SAMPLES[name]:
        by_model = _accepts_model(IngestParams, **{"source": "a.mp4", name: value})
        assert _accepts_schema(schema, value) == by_model, (name, value)
        if name != "source":
            assert _accepts_model(IngestSettings, **{name: value}) == by_model, (name, value)
    # The samples cover both outcomes, so the comparison can tell the three apart.
    outcomes = {_accepts_model(IngestParams, **{"source": "a.mp4", name: v}) for v in SAMPLES[name]}
    assert outcomes == {True, False}, name


def test_channel_settings_are_the_form_fields_but_source():
    assert list(IngestSettings.model_fields) == [f for f in IngestParams.FORM_FIELDS if f != "source"]
    assert all(f.default is None for f in IngestSettings.model_fields.values())
    settings = IngestSettings(sample_fps=2, collection="retail")
    assert settings.conf("/in/a.mp4") == {"source": "/in/a.mp4", "collection": "retail", "sample_fps": 2.0}
    assert IngestSettings().collection_name == DEFAULT_COLLECTION
    # Every conf a channel produces is valid IngestParams.
    IngestParams.from_conf(settings.conf("/in/a.mp4"))
