"""Build `vidsearch.pipeline.Services` from Airflow connections, variables and environment.

Connection ids vary by environment, not by code: `vidsearch_postgres` (the catalog database) and
`weaviate_default` (the vector index), overridable with VIDSEARCH_POSTGRES_CONN_ID and
VIDSEARCH_WEAVIATE_CONN_ID. The object-storage root is VIDSEARCH_STORAGE_ROOT or the Airflow Variable
`vidsearch_storage_root` (`file://...` or `s3://bucket/prefix`). Nothing here runs at DAG parse time.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from airflow.sdk import ObjectStoragePath, Variable
from vidsearch.models import modelstore
from vidsearch.pipeline import Services
from vidsearch.stores import catalog as cat
from vidsearch.stores.index import ObjectIndex

POSTGRES_CONN_ID = os.environ.get("VIDSEARCH_POSTGRES_CONN_ID", "vidsearch_postgres")
WEAVIATE_CONN_ID = os.environ.get("VIDSEARCH_WEAVIATE_CONN_ID", "weaviate_default")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def storage_root() -> str:
    """The one object-storage root, validated as an Airflow ObjectStoragePath."""
    root = os.environ.get("VIDSEARCH_STORAGE_ROOT") or Variable.get(
        "vidsearch_storage_root", default=f"file://{PROJECT_ROOT / 'data' / 'objects'}"
    )
    path = ObjectStoragePath(root)
    if path.protocol not in ("file", "local", "s3"):
        raise ValueError(f"unsupported storage root {root!r}: use file:// or s3://")
    return root.rstrip("/")


@functools.lru_cache(maxsize=1)
def _catalog(url: str) -> cat.Catalog:
    catalog = cat.Catalog.from_url(url)
    cat.migrate(catalog.engine)  # once per worker process: cheap when already at head
    return catalog


def catalog() -> cat.Catalog:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return _catalog(PostgresHook(postgres_conn_id=POSTGRES_CONN_ID).get_uri())


@functools.lru_cache(maxsize=1)
def object_index() -> ObjectIndex:
    from airflow.providers.weaviate.hooks.weaviate import WeaviateHook

    return ObjectIndex(lambda: WeaviateHook(conn_id=WEAVIATE_CONN_ID).get_conn())


def services() -> Services:
    return Services(
        catalog=catalog(),
        index=object_index,
        storage_root=storage_root(),
        tiny_models=modelstore.is_tiny_mode(),
        model_cache=os.environ.get("VIDSEARCH_MODEL_CACHE"),
    )
