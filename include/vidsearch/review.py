"""Human review of quarantined segments: what the reviewer is shown, and acting on the decision.

`video_ingest` asks one review per quarantined segment (Airflow's human-in-the-loop operator, see
`vidsearch_airflow.review`); this module holds the parts that know nothing of Airflow:

* `plan` lists the run's quarantined segments as `ReviewRequest`s (failed expectations, error and the
  run's quality report, all from the catalog);
* `apply` records the decision in `segment_reviews` (who, when, timed out or not) and acts on it:

  - **reprocess**: the segment goes back to `pending` and is run again in the same DAG run (the
    `reprocess` task group); a segment that fails its gate again is quarantined again and finalize fails.
  - **accept**: the segment's own results are indexed as they are, ignoring the failed gate, when its
    frame bundle and detect+embed output exist (a gate after detect+embed failed); otherwise (the frames
    gate failed, nothing to index) it is only marked accepted. Either way it is `accepted` and counts
    as done.
  - **drop**: the segment is `dropped`; nothing of it is indexed (quarantine already removed it from
    both stores), finalize and search leave it out, and the video stays `partial`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from vidsearch.errors import PermanentError
from vidsearch.media import bundle as frame_bundle
from vidsearch.models import launcher
from vidsearch.params import REVIEW_CHOICES, IngestParams
from vidsearch.pipeline import Services, detections_uri, run_video_id, store_segment, video_root
from vidsearch.records import Record, Segment, format_ts
from vidsearch.stores import catalog as cat
from vidsearch.stores import storage

log = logging.getLogger(__name__)


class ReviewRequest(Record):
    """One quarantined segment as the reviewer sees it."""

    collection: str
    segment: Segment
    error: str | None
    quality: list[dict[str, Any]] | None  # the failed expectations
    quality_report: str | None  # the run's quality report folder (JSON + Markdown per gate)


def plan(svc: Services, run_id: str, params: IngestParams) -> list[ReviewRequest]:
    """The run's quarantined segments, in order."""
    video_id = run_video_id(svc, run_id)
    run = svc.catalog.get_run(run_id) or {}
    return [
        ReviewRequest(
            collection=params.collection,
            segment=Segment(
                video_id=video_id, index=r["segment_index"], start_s=r["start_s"], end_s=r["end_s"], uri=r["uri"]
            ),
            error=r["error"],
            quality=r["quality"],
            quality_report=run.get("quality_report"),
        )
        for r in svc.catalog.segment_states(params.collection, video_id).values()
        if r["state"] == cat.SegmentState.QUARANTINED.value
    ]


def subject(req: ReviewRequest) -> str:
    return f"Quarantined segment {req.segment.label} of video {req.segment.video_id}"


def body(req: ReviewRequest, default: str, timeout_hours: float) -> str:
    """The review's Markdown: the failure, the failed expectations, the report, the choices."""
    seg = req.segment
    lines = [
        f"Segment **{seg.name}** ({format_ts(seg.start_s)}-{format_ts(seg.end_s)}) of video `{seg.video_id}` "
        f"in collection `{req.collection}` failed a quality gate and was quarantined.",
        "",
        f"**Error:** {req.error or 'none recorded'}",
        "",
        f"**Quality report:** `{req.quality_report or 'none'}`",
        "",
        "**Failed expectations:**",
    ]
    if req.quality:
        lines += [f"- `{json.dumps(f, sort_keys=True, default=str)}`" for f in req.quality]
    else:
        lines.append("- none recorded")
    lines += [
        "",
        "Choose **reprocess** (run the segment again in this run), **accept** (index its results as they "
        "are, or mark it accepted if there are none) or **drop** (leave it out of the video). "
        f"Unanswered after {timeout_hours:g} h: **{default}**.",
    ]
    return "\n".join(lines)


def _accept(svc: Services, params: IngestParams, seg: Segment) -> str:
    """Index the segment's results ignoring its failed gate, when there are any; mark it accepted."""
    bundle_uri = storage.join(video_root(svc, seg.video_id), "frames", f"{seg.name}.zip")
    try:
        with frame_bundle.open_bundle(bundle_uri) as reader:
            bundle = reader.bundle
        result, vectors = launcher.read_result(detections_uri(svc, bundle))
    except (FileNotFoundError, PermanentError, ValueError) as exc:
        outcome = f"accepted; nothing indexed (no usable results: {exc})"
    else:
        store_segment(svc, params.collection, bundle, result, vectors)
        outcome = f"accepted; indexed as is: {len(bundle.frames)} frames, {len(result.objects)} objects"
    row = svc.catalog.segment_states(params.collection, seg.video_id)[seg.index]
    # Frame and object counts (if indexed) stay; the failure is kept for the record.
    svc.catalog.set_segment_state(
        params.collection, seg.video_id, seg.index, cat.SegmentState.ACCEPTED, row["error"], row["quality"]
    )
    return outcome


def apply(
    svc: Services,
    params: IngestParams,
    req: ReviewRequest,
    decision: str,
    *,
    run_id: str,
    dag_id: str,
    task_id: str,
    map_index: int,
    decided_by: dict[str, Any] | None,
    decided_at: dt.datetime,
    timed_out: bool,
) -> dict[str, Any]:
    """Act on a review decision and record it; returns `{"segment", "decision", "outcome"}`.

    `decided_by` is the Airflow user (`{"id", "name"}`), None when the timeout default applied.
    """
    if decision not in REVIEW_CHOICES:
        raise PermanentError(f"unknown review decision {decision!r} (want one of {', '.join(REVIEW_CHOICES)})")
    seg = req.segment
    who = (decided_by or {}).get("name") or "nobody (timeout default)"
    if decision == "drop":
        svc.index().delete_segment(params.collection, seg.video_id, seg.index)
        svc.catalog.set_segment_state(
            params.collection, seg.video_id, seg.index, cat.SegmentState.DROPPED, req.error, req.quality
        )
        outcome = "dropped; nothing of it is indexed"
    elif decision == "accept":
        outcome = _accept(svc, params, seg)
    else:
        svc.catalog.set_segment_state(
            params.collection, seg.video_id, seg.index, cat.SegmentState.PENDING, f"reprocess requested by {who}"
        )
        outcome = "reprocessing in this run"
    svc.catalog.record_review(
        dict(
            run_id=run_id,
            collection=params.collection,
            video_id=seg.video_id,
            segment_index=seg.index,
            dag_id=dag_id,
            task_id=task_id,
            map_index=map_index,
            decision=decision,
            decided_by=(decided_by or {}).get("name"),
            decided_by_id=(decided_by or {}).get("id"),
            decided_at=decided_at,
            timed_out=timed_out,
            error=req.error,
            quality=req.quality,
            quality_report=req.quality_report,
            outcome=outcome,
        )
    )
    log.info("%s: %s by %s at %s: %s", seg.label, decision, who, decided_at.isoformat(), outcome)
    return {"segment": seg.model_dump(mode="json"), "decision": decision, "outcome": outcome}
