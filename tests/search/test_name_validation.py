"""Every validated name refuses a trailing newline (and other look-alikes) - the whole string must match.

`re.match(r"^...$", name)` and JSON schema's `pattern` (jsonschema calls `re.search`) both accept
"name\\n": Python's `$` also matches before a final newline. The checks here cover each kind of name the
project validates: collection names (service, index, pipeline params, the reprocess DAG's form), label
names (service and API), channel names (channels file and the channel_ingest DAG's form), video ids in
the reprocess form, and connection ids of airflow_settings.yaml.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NEWLINES = ["\n", "\r\n", "\r"]


def _dag_params(name: str) -> dict:
    spec = importlib.util.spec_from_file_location(f"_dag_{name}", ROOT / "dags" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PARAMS


@pytest.mark.parametrize("tail", NEWLINES)
def test_collection_names(tail):
    from pydantic import TypeAdapter, ValidationError
    from vidsearch.errors import InputError, NotFoundError
    from vidsearch.params import CollectionName
    from vidsearch.search import SearchService, is_collection_name
    from vidsearch.stores.index import validate_collection_name

    assert is_collection_name("search_api") and not is_collection_name("search_api" + tail)
    assert validate_collection_name("search_api") == "search_api"
    with pytest.raises(InputError):
        validate_collection_name("search_api" + tail)
    TypeAdapter(CollectionName).validate_python("search_api")
    with pytest.raises(ValidationError):
        TypeAdapter(CollectionName).validate_python("search_api" + tail)

    class NoCatalog:
        engine = None

        def get_collection(self, name):  # never reached for an invalid name
            raise AssertionError(f"the catalog was asked for {name!r}")

    svc = SearchService(NoCatalog(), lambda: None, crop_cache_bytes=0, frame_cache_bytes=0)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        svc.require_collection("search_api" + tail)


@pytest.mark.parametrize("tail", [*NEWLINES, "\t", "\x00", "\x1b[31m"])
def test_label_names(tail):
    from vidsearch.errors import InputError
    from vidsearch.search import validate_label_name

    assert validate_label_name("cat 🐈 <b>/'\"") == "cat 🐈 <b>/'\""
    with pytest.raises(InputError):
        validate_label_name("cat" + tail)
    with pytest.raises(InputError):
        validate_label_name(tail + "cat")


@pytest.mark.parametrize("tail", NEWLINES)
def test_channel_names(tail):
    from pydantic import ValidationError
    from vidsearch.channels.config import Channel

    Channel.model_validate({"name": "news", "kind": "folder", "location": "videos"})
    with pytest.raises(ValidationError, match="name"):
        Channel.model_validate({"name": "news" + tail, "kind": "folder", "location": "videos"})


@pytest.mark.parametrize("tail", NEWLINES)
def test_connection_ids(tail):
    from pydantic import ValidationError
    from vidsearch_airflow.airflow_settings import ConnectionSetting

    ConnectionSetting.model_validate({"conn_id": "vidsearch_postgres", "conn_type": "postgres"})
    with pytest.raises(ValidationError, match="conn_id"):
        ConnectionSetting.model_validate({"conn_id": "vidsearch_postgres" + tail, "conn_type": "postgres"})


@pytest.mark.parametrize("tail", NEWLINES)
def test_dag_form_params(tail):
    from airflow.sdk.exceptions import ParamValidationError

    reprocess = _dag_params("reprocess_segments")
    reprocess["collection"].resolve("search_api")
    reprocess["video_id"].resolve("0" * 32)
    with pytest.raises(ParamValidationError):
        reprocess["collection"].resolve("search_api" + tail)
    with pytest.raises(ParamValidationError):
        reprocess["video_id"].resolve("0" * 32 + tail)
    channels = _dag_params("channel_ingest")["channels"]
    channels.resolve(["news"])
    with pytest.raises(ParamValidationError):
        channels.resolve(["news" + tail])


@pytest.mark.integration
@pytest.mark.parametrize("tail", ["\n", "\r"])
def test_the_api_refuses_names_with_a_trailing_newline(api_client, ingested, tail):
    from urllib.parse import quote

    oid = ingested["object_ids"][0]
    r = api_client.post(
        "api/collections/search_api/labels", json={"object_ids": [oid], "name": "cat" + tail, "polarity": "positive"}
    )
    assert r.status_code == 422 and "control" in r.json()["detail"], r.text
    r = api_client.get(f"api/collections/search_api/labels/{quote('cat' + tail, safe='')}/events")
    assert r.status_code in (404, 422), r.text  # "\n": no route matches (`{name:path}` is `.*`)
    r = api_client.get(f"api/collections/{quote('search_api' + tail, safe='')}/videos")
    assert r.status_code == 404, r.text
