"""Stores: every system that holds state, each behind one client that owns its queries.

`catalog` (Postgres: videos, segments, frames, objects; migrations in `migrations/`), `labels`
(labels, propagation and label events), `index` (Weaviate: vectors, nearest neighbours), `storage`
(object storage: a folder or S3).
"""

from __future__ import annotations
from vidsearch import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "catalog": ("SegmentState", "RunState", "sqlalchemy_url", "engine_for", "head_revision", "schema_is_current", "migrate", "Catalog"),
        "index": ("validate_collection_name", "weaviate_collection_name", "is_transient", "segment_filter", "ObjectIndex"),
        "storage": ("filesystem", "is_local", "local_path", "join", "upload", "write_bytes", "read_bytes", "open_uri", "local_file", "exists", "delete_prefix", "list_prefix"),
    },
)
