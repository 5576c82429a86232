"""Reprocessing a video's failed, quarantined or unfinished segments with its original settings.

`plan` picks the segments, recovers the IngestParams of the run that last probed the video and opens
a catalog run for the repair; the `reprocess_segments` DAG maps the shared segment tasks over what it
returns and ends with `pipeline.finalize` over the whole video. Done segments are never touched.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from vidsearch.errors import InputError
from vidsearch.params import IngestParams
from vidsearch.pipeline import ProbeOutput, Services
from vidsearch.records import Record, Segment, VideoManifest
from vidsearch.stores.catalog import RunState

log = logging.getLogger(__name__)

# The segment states a repair may pick ("pending": a run that was killed mid-way).
REPROCESSABLE: tuple[str, ...] = ("failed", "quarantined", "pending")


class Target(Record):
    """The video a repair works on, the settings of the run that last probed it, and probe's output
    for it (manifest + staged source) as the segment tasks take it."""

    video: dict[str, Any]
    params: IngestParams
    probed: ProbeOutput


def target(svc: Services, collection: str, video_id: str, states: Sequence[str]) -> Target:
    """The video `video_id` of `collection`; InputError for a state that cannot be reprocessed or a
    video the catalog does not have."""
    bad = sorted(set(states) - set(REPROCESSABLE))
    if bad:
        raise InputError(f"cannot reprocess segments in state(s) {', '.join(bad)}")
    video = svc.catalog.get_video(collection, video_id)
    if video is None:
        raise InputError(f"no video {video_id} in collection {collection!r}")
    original = svc.catalog.get_run(video["last_run_id"]) if video["last_run_id"] else None
    settings = dict(original["params"]) if original else {"source": video["source"]}
    settings["collection"] = collection
    probed = ProbeOutput(manifest=VideoManifest.model_validate(video["manifest"]), source_uri=video["source_uri"])
    return Target(video=video, params=IngestParams.from_conf(settings), probed=probed)


def plan(
    svc: Services, run_id: str, dag_id: str, collection: str, video_id: str, states: Sequence[str]
) -> list[dict[str, Any]]:
    """The video's segments in `states`, as the segment group's mapped kwargs (`segment`, `probed`,
    `ingest`); records the repair as catalog run `run_id` and logs what it picked and why."""
    tgt = target(svc, collection, video_id, states)
    video, params = tgt.video, tgt.params
    rows = svc.catalog.segment_states(params.collection, video["video_id"])
    chosen = [r for r in rows.values() if r["state"] in states]
    segments = [
        Segment(
            video_id=video["video_id"], index=r["segment_index"], start_s=r["start_s"], end_s=r["end_s"], uri=r["uri"]
        )
        for r in chosen
    ]
    svc.catalog.start_run(run_id, dag_id, params.collection, video["source"], params.model_dump(mode="json"))
    svc.catalog.end_run(run_id, RunState.RUNNING, video_id=video["video_id"])
    counts: dict[str, int] = {}
    for r in rows.values():
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    log.info(
        "video %s in %s: %d segments (%s); reprocessing %d in state(s) %s with the settings of run %s",
        video["video_id"],
        params.collection,
        len(rows),
        ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none",
        len(segments),
        "/".join(states),
        video["last_run_id"],
    )
    for seg, r in zip(segments, chosen):
        log.info("  %s: %s (%s)", seg.label, r["state"], r["error"] or "no error recorded")
    if not segments:
        log.info("nothing to reprocess")
    ingest = params.model_dump(mode="json")
    probed = tgt.probed.model_dump(mode="json")
    return [{"segment": s.model_dump(mode="json"), "probed": probed, "ingest": ingest} for s in segments]
