"""
# reprocess_segments

Re-runs only the **failed** or **quarantined** (or left **pending**) segments of one video, with the
settings of the run that ingested it, and leaves its done segments untouched.

`plan` → per selected segment (the same mapped task group as `video_ingest`, one row per segment in
the grid, named like `seg0003 [00:30.000-00:40.000]`): `extract_frames` → `detect_embed` → `index` →
`finalize`.

* **plan** reads the video (manifest, staged source) and the params of the run that last probed it
  from the catalog, and picks the video's segments whose state is one of `states`.
* the segment tasks are `video_ingest`'s, with the same retries, timeouts and pools.
* **finalize** checks the whole video as `video_ingest` does (Postgres and Weaviate agree object for
  object, every segment done), closes this run in the catalog and emits the collection's asset event.

Idempotent: every write is keyed by deterministic ids, and once nothing is left in the chosen states a
run has nothing to do and succeeds (if the whole video is good). Find the video id and segment states
in the failed `video_ingest` run (the `finalize` log names the bad segments) or in the catalog
(`segments` table). Reprocessing a segment that fails its quality gate again quarantines it again.

The alternative from the grid: select the failed mapped task of a segment in the failed
`video_ingest` run and **Clear** it with *Downstream* (this re-runs that segment and `finalize`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import AssetAlias, Param, TriggerRule, dag, get_current_context, task
from vidsearch_airflow.segment_tasks import DEFAULT_ARGS, STAGES, segment_group

COLLECTIONS_ALIAS = "vidsearch_collections"
REPROCESSABLE = ["failed", "quarantined", "pending"]

PARAMS = {
    "collection": Param(
        "default",
        type="string",
        pattern=r"^[a-z][a-z0-9_]{0,62}$",
        title="Collection",
        description="The catalog collection the video was ingested into.",
    ),
    "video_id": Param(
        type="string",
        pattern=r"^[0-9a-f]{32}$",
        title="Video id",
        description="The video's id (32 hex digits: the start of its content hash), as in the catalog "
        "and in the video_ingest run's probe log.",
    ),
    "states": Param(
        ["failed", "quarantined"],
        type="array",
        items={"type": "string", "enum": REPROCESSABLE},
        minItems=1,
        uniqueItems=True,
        title="Segment states to reprocess",
        description="Reprocess the video's segments in these states: failed, quarantined, pending "
        "(a run that was killed mid-way). Done segments are never touched.",
    ),
}


@dag(
    dag_id="reprocess_segments",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=4,
    default_args=DEFAULT_ARGS,
    params=PARAMS,
    tags=["vidsearch", "ingest", "operations"],
    doc_md=__doc__,
)
def reprocess_segments() -> None:
    @task(**STAGES["plan"].task_kwargs())
    def plan() -> list[dict]:
        """Pick the video's segments in the chosen states; recover the original run's settings."""
        import logging

        from vidsearch.stores import catalog as cat
        from vidsearch import pipeline
        from vidsearch.records import Segment
        from vidsearch_airflow.services import services

        log = logging.getLogger(__name__)
        ctx = get_current_context()
        states = list(ctx["params"]["states"])
        svc = services()
        video, params, probed = _video(svc)
        rows = svc.catalog.segment_states(params.collection, video["video_id"])
        chosen = [r for r in rows.values() if r["state"] in states]
        segments = [
            Segment(
                video_id=video["video_id"], index=r["segment_index"], start_s=r["start_s"], end_s=r["end_s"], uri=r["uri"]
            )
            for r in chosen
        ]
        run_id = ctx["run_id"]
        svc.catalog.start_run(
            run_id, ctx["dag"].dag_id, params.collection, video["source"], params.model_dump(mode="json")
        )
        svc.catalog.end_run(run_id, cat.RunState.RUNNING, video_id=video["video_id"])
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
        probed_json = probed.model_dump(mode="json")
        return [{"segment": s.model_dump(mode="json"), "probed": probed_json, "ingest": ingest} for s in segments]

    # Runs when every reprocessed segment is done, failed or quarantined, and also when there was
    # nothing to reprocess (plan succeeded, the mapped group was empty).
    @task(
        outlets=[AssetAlias(COLLECTIONS_ALIAS)],
        trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS,
        **STAGES["finalize"].task_kwargs(),
    )
    def finalize(planned: list, *, outlet_events: Any = None) -> dict:
        """Check the whole video in both stores; close the run; emit the collection's asset event."""
        from airflow.sdk import Asset

        from vidsearch import pipeline
        from vidsearch_airflow.services import services

        svc = services()
        video, params, _ = _video(svc)
        summary = pipeline.finalize(svc, get_current_context()["run_id"], params, video["video_id"])
        if planned:
            outlet_events[AssetAlias(COLLECTIONS_ALIAS)].add(
                Asset(f"vidsearch://collections/{params.collection}", group="vidsearch"),
                extra=summary.model_dump(mode="json"),
            )
        return summary.model_dump(mode="json")

    planned = plan()
    groups = segment_group("segment").expand_kwargs(planned)
    groups >> finalize(planned)


def _video(svc: Any) -> tuple[dict, Any, Any]:
    """The video named by the run's params, the IngestParams of the run that last probed it, and
    probe's output for it (manifest + staged source) as the segment tasks take it."""
    from vidsearch import pipeline
    from vidsearch.errors import InputError
    from vidsearch.records import VideoManifest

    p = get_current_context()["params"]
    collection, video_id = p["collection"], p["video_id"]
    bad = sorted(set(p["states"]) - set(REPROCESSABLE))
    if bad:
        raise InputError(f"cannot reprocess segments in state(s) {', '.join(bad)}")
    video = svc.catalog.get_video(collection, video_id)
    if video is None:
        raise InputError(f"no video {video_id} in collection {collection!r}")
    original = svc.catalog.get_run(video["last_run_id"]) if video["last_run_id"] else None
    settings = dict(original["params"]) if original else {"source": video["source"]}
    settings["collection"] = collection
    params = pipeline.IngestParams.model_validate(
        {k: v for k, v in settings.items() if k in pipeline.IngestParams.model_fields}
    )
    probed = pipeline.ProbeOutput(
        manifest=VideoManifest.model_validate(video["manifest"]), source_uri=video["source_uri"]
    )
    return video, params, probed


reprocess_segments()
