"""
# reprocess_segments

Re-runs only the **failed** or **quarantined** (or left **pending**) segments of one video, with the
settings of the run that ingested it, and leaves its done segments untouched.

`plan` → per selected segment (the same mapped task group as `video_ingest`, one row per segment in
the grid, named like `seg0003 [00:30.000-00:40.000]`): `extract_frames` → `detect_embed` → `index` →
`plan_reviews` → `review` → `plan_reprocess` → `reprocess` → `finalize`.

* **plan** reads the video (manifest, staged source) and the params of the run that last probed it
  from the catalog, and picks the video's segments whose state is one of `states`.
* the segment tasks are `video_ingest`'s, with the same retries, timeouts and pools.
* a reprocessed segment quarantined again is **reviewed** as in `video_ingest` (reprocess, accept,
  drop; the run's `review`, `review_timeout_hours` and `review_default` settings), one review per
  such segment; segments this run did not pick are not asked about.
* **finalize** checks the whole video as `video_ingest` does (Postgres and Weaviate agree object for
  object), closes this run and the video as `done` (every segment done or accepted), `partial` or
  `failed`, and emits the collection's asset event; it fails while a segment is still failed,
  quarantined or pending. Reprocessing a partial video's segments to success makes it `done`;
  segments a reviewer dropped stay dropped (and the video partial).

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

from airflow.sdk import Param, TriggerRule, dag, get_current_context, task
from vidsearch.params import COLLECTION_NAME_PATTERN, DEFAULT_COLLECTION
from vidsearch.reprocess import REPROCESSABLE
from vidsearch_airflow.assets import COLLECTIONS_ALIAS, emit_collection_changed
from vidsearch_airflow.policy import DEFAULT_ARGS, STAGES
from vidsearch_airflow.review import review_quarantined
from vidsearch_airflow.segment_tasks import segment_group

PARAMS = {
    "collection": Param(
        DEFAULT_COLLECTION,
        type="string",
        pattern=COLLECTION_NAME_PATTERN + r"(?!\n)",  # re.search: `$` also matches before a final newline
        title="Collection",
        description="The catalog collection the video was ingested into.",
    ),
    "video_id": Param(
        type="string",
        pattern=r"^[0-9a-f]{32}$(?!\n)",
        title="Video id",
        description="The video's id (32 hex digits: the start of its content hash), as in the catalog "
        "and in the video_ingest run's probe log.",
    ),
    "states": Param(
        ["failed", "quarantined"],
        type="array",
        items={"type": "string", "enum": list(REPROCESSABLE)},
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
        from vidsearch import reprocess
        from vidsearch_airflow.services import services

        ctx = get_current_context()
        p = ctx["params"]
        return reprocess.plan(
            services(), ctx["run_id"], ctx["dag"].dag_id, p["collection"], p["video_id"], list(p["states"])
        )

    # Runs whatever happened before it (every reprocessed segment done, failed or quarantined, or
    # nothing to reprocess); skipped when the plan failed.
    @task(
        outlets=[COLLECTIONS_ALIAS],
        trigger_rule=TriggerRule.ALL_DONE,
        **STAGES["finalize"].task_kwargs(),
    )
    def finalize(*, outlet_events: Any = None) -> dict:
        """Check the whole video in both stores; close the run; emit the collection's asset event."""
        from airflow.sdk.exceptions import AirflowSkipException
        from vidsearch import pipeline, reprocess
        from vidsearch_airflow.services import services

        ctx = get_current_context()
        planned = ctx["ti"].xcom_pull(task_ids="plan")
        if planned is None:
            raise AirflowSkipException("the plan failed: nothing was reprocessed")
        p = ctx["params"]
        svc = services()
        tgt = reprocess.target(svc, p["collection"], p["video_id"], list(p["states"]))
        summary = pipeline.finalize(svc, ctx["run_id"], tgt.params, tgt.video["video_id"]).model_dump(mode="json")
        if planned:
            emit_collection_changed(outlet_events, tgt.params.collection, summary)
        return summary

    planned = plan()
    groups = segment_group("segment").expand_kwargs(planned)
    again = review_quarantined(groups, planned=planned)
    # finalize waits for the segments themselves too (a segment task cleared in the grid runs first).
    [planned, groups, again] >> finalize()


reprocess_segments()
