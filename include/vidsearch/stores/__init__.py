"""Stores: every system that holds state, each behind one client that owns its queries.

`catalog` (Postgres: the schema, and the pipeline's writes and reads of videos, segments, frames and
objects; migrations in `migrations/`), `browse` (the search API's reads of the catalog), `labels`
(labels, propagation and label events, and the label vocabulary), `transcripts` (transcript chunks
and each segment's audio state), `index` (Weaviate: vectors, nearest
neighbours), `storage` (object storage: a folder or S3).
"""

from __future__ import annotations

from vidsearch import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "catalog": (
            "SegmentState",
            "RunState",
            "utc_now",
            "sqlalchemy_url",
            "engine_for",
            "head_revision",
            "schema_is_current",
            "migrate",
            "transient_db_errors",
            "chunks",
            "existing_object_ids",
            "Catalog",
        ),
        "browse": ("CatalogBrowser",),
        "labels": ("Polarity", "Source", "Action", "LabelStore"),
        "transcripts": ("AudioStatus", "TranscriptStore"),
        "index": (
            "validate_collection_name",
            "weaviate_collection_name",
            "weaviate_transcripts_name",
            "is_transient",
            "segment_filter",
            "ObjectIndex",
        ),
        "storage": (
            "filesystem",
            "is_local",
            "local_path",
            "join",
            "upload",
            "write_bytes",
            "read_bytes",
            "open_uri",
            "local_file",
            "exists",
            "delete_prefix",
            "list_prefix",
        ),
    },
)
