"""The asset events vidsearch DAGs emit: one per collection a run changed.

Both `video_ingest` and `reprocess_segments` name the same alias in their `outlets` and attach one
`vidsearch://collections/<name>` event to it when a run's finalize succeeds, with the run's summary
as the event's extra; a DAG scheduled on the collection's asset runs after every change to it.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset, AssetAlias

COLLECTIONS_ALIAS = AssetAlias("vidsearch_collections")


def collection_asset(collection: str) -> Asset:
    """The asset standing for one collection's objects."""
    return Asset(f"vidsearch://collections/{collection}", group="vidsearch")


def emit_collection_changed(outlet_events: Any, collection: str, summary: dict[str, Any]) -> None:
    """Attach the collection's event (extra: the run's summary) to the alias of this task's outlets."""
    outlet_events[COLLECTIONS_ALIAS].add(collection_asset(collection), extra=summary)
