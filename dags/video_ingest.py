"""
# video_ingest

Turns one video into searchable objects. One DAG run = one video.

`probe` → `split` → per segment (a mapped task group, one row per segment in the grid, named like
`seg0003 [00:30.000-00:40.000]`): `extract_frames` → `detect_embed` → `index`, and beside it, in
parallel, `extract_audio` → `transcribe` → `index_transcript` → `plan_reviews` →
`review` (one per quarantined segment) → `plan_reprocess` → `reprocess` (the segment group again, for
the segments a reviewer sent back) → `finalize`.

* **probe** fetches the source (path, http(s) URL or `s3://` URI), checks it is a decodable video and
  copies it to object storage under its content hash. Meanwhile it loads the run's detector and
  embedder where detect+embed will run (the warm worker, a worker process, the warm-worker service;
  not in kubernetes mode, where the first segment's pod does): a model that cannot be loaded fails
  the run here, before anything is split or sampled. Bad input fails here, once, without retries.
* **split** cuts stream-copied segment files at keyframes (no re-encode).
* **extract_frames** samples a segment at `sample_fps` into one frame bundle.
* **detect_embed** runs the detect+embed worker command (DETR-family detector, CLIP-family crop
  embeddings) as a local process; the same argv runs in a GPU pod in production.
* **index** upserts the segment's objects into Weaviate and its frames and objects into Postgres.
* **extract_audio** cuts the segment's audio from the staged source, reaching `audio_overlap_s` (run
  conf, default 1 s) into each neighbour so no word is lost at a cut, as 16 kHz mono WAV. A video
  without an audio track, or a run with `transcribe: false`, skips the audio branch (its three tasks
  show as skipped, not failed).
* **transcribe** runs the transcribe worker command (transformers' Whisper, `asr_model`, default
  openai/whisper-base) where detect+embed runs (same modes, same argv everywhere): timestamped
  phrases relative to the video start, the language detected, each phrase's text embedded by the
  run's CLIP-family embedder for hybrid search. A phrase heard by two neighbouring segments is kept
  by the one its midpoint falls in.
* **index_transcript** gates the transcript (timestamps inside the segment and increasing, no empty
  texts, no repeated-token loops) and writes its chunks to Weaviate (BM25 and vectors) and Postgres
  (full-text index). A failed gate quarantines the segment's audio only; its frames stay searchable.
* **review** is Airflow's human-in-the-loop operator, one mapped instance per quarantined segment
  (none when nothing was quarantined): it shows the failed expectations and the quality report and
  waits (state `awaiting_input`, no worker slot) for **reprocess** (run the segment again in this run),
  **accept** (index its results as they are, ignoring the failed gate, or mark it accepted when there
  are none; it counts as done) or **drop** (leave it out; the video stays `partial`). Answer it in
  Required Actions or through the REST API. Unanswered after `review_timeout_hours` (run conf,
  default 24) the scheduler applies `review_default` (default `drop`). Who chose what and when is
  recorded in the catalog (`segment_reviews`). Conf `review: false` skips the reviews.
* **finalize** (runs whatever happened before it) checks both stores agree object for object, closes
  the run and the video as `done` (every segment done or accepted), `partial` (some usable, the
  others failed, quarantined or dropped) or `failed` (probe or split failed, nothing usable, stores
  disagree) and emits an asset event for the collection. It **fails** while a segment still needs
  someone (failed, quarantined or not run), naming it; a video partial only by reviewers' drops is a
  decision, and finalize succeeds.

Great Expectations gates check every stage (probe, split, each segment file, frames, detections,
embeddings, index). A failed probe or split gate fails the run; any other failed gate stops that
segment only: it is marked `quarantined` in the catalog with the failed expectations, the other
segments go on, and the segment is reviewed. Each gate's result is kept
under `<storage root>/quality/<run id>/` (JSON and Markdown); the task log links it.

Every write is keyed by deterministic ids: running the same video again changes no count. Because
finalize runs whatever failed before it, a failed probe, split or segment never leaves the run
`running` or the video `ingesting`. A run that ends without its finalize (marked failed by hand,
finalize killed) is closed from its segments' states by the `catalog_maintenance` DAG (every 10
minutes).

Retries, timeouts and pools are set per stage (`vidsearch_airflow/policy.py`): transient errors
(Weaviate 5xx, S3 throttling, network, a killed worker, a timeout) retry with exponential backoff,
permanent ones fail at once; `detect_embed` runs in the `gpu` pool and `index` in `weaviate_writers`.
A failed segment is repaired by clearing its failed tasks (with downstream) in the grid, or with the
`reprocess_segments` DAG; done segments are left as they are (docs/operations.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import TriggerRule, dag, get_current_context, task
from vidsearch_airflow.assets import COLLECTIONS_ALIAS, emit_collection_changed
from vidsearch_airflow.forms import ingest_form
from vidsearch_airflow.policy import DEFAULT_ARGS, STAGES
from vidsearch_airflow.review import review_quarantined
from vidsearch_airflow.segment_tasks import segment_group
from vidsearch_airflow.task_context import ingest_params, timed


@dag(
    dag_id="video_ingest",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=8,
    default_args=DEFAULT_ARGS,
    params=ingest_form(),
    tags=["vidsearch", "ingest"],
    doc_md=__doc__,
)
def video_ingest() -> None:
    @task(**STAGES["probe"].task_kwargs())
    def probe() -> dict:
        """Fetch the source, check it is a decodable video, load the models where detect+embed runs,
        and stage the video in object storage."""
        from vidsearch import pipeline
        from vidsearch_airflow.gpu import model_check
        from vidsearch_airflow.services import services

        with timed("probe"):
            ctx = get_current_context()
            svc, params = services(), ingest_params()
            out = pipeline.probe_video(
                svc, ctx["run_id"], ctx["dag"].dag_id, params, check_models=model_check(svc, params)
            )
            return out.model_dump(mode="json")

    @task(**STAGES["split"].task_kwargs())
    def split(probed: dict) -> list[dict]:
        """Cut the video into keyframe-aligned segment files; one mapped group per segment follows."""
        from vidsearch import pipeline
        from vidsearch_airflow.gpu import min_segment_seconds
        from vidsearch_airflow.services import services

        with timed("split"):
            run_id = get_current_context()["run_id"]
            probed_out = pipeline.ProbeOutput.model_validate(probed)
            segs = pipeline.split_video(services(), run_id, ingest_params(), probed_out, min_segment_seconds())
            return [s.model_dump(mode="json") for s in segs]

    # extract_frames → detect_embed → index, one mapped group per segment (shared with reprocess_segments).
    process_segment = segment_group("segment")

    # Runs whatever happened before it: it closes the run and the video in a terminal state.
    @task(
        outlets=[COLLECTIONS_ALIAS],
        trigger_rule=TriggerRule.ALL_DONE,
        **STAGES["finalize"].task_kwargs(),
    )
    def finalize(*, outlet_events: Any = None) -> dict:
        """Check Postgres and Weaviate agree object for object; close the run; emit the asset event."""
        from vidsearch import pipeline
        from vidsearch_airflow.services import services

        with timed("finalize"):
            params = ingest_params()
            ctx = get_current_context()
            summary = pipeline.finalize(services(), ctx["run_id"], params)
            emit_collection_changed(outlet_events, params.collection, summary.model_dump(mode="json"))
            return summary.model_dump(mode="json")

    probed = probe()
    segments = split(probed)
    groups = process_segment.partial(probed=probed).expand(segment=segments)
    again = review_quarantined(groups, probed=probed)
    # finalize waits for the segments themselves too: a segment task cleared in the grid (a repair)
    # runs again before finalize does, not after.
    done = finalize()
    [groups, again] >> done


video_ingest()
