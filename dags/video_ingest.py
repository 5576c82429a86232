"""
# video_ingest

Turns one video into searchable objects. One DAG run = one video.

`probe` → `split` → per segment (a mapped task group, one row per segment in the grid, named like
`seg0003 [00:30.000-00:40.000]`): `extract_frames` → `detect_embed` → `index` → `finalize`.

* **probe** fetches the source (path, http(s) URL or `s3://` URI), checks it is a decodable video and
  copies it to object storage under its content hash. Bad input fails here, once, without retries.
* **split** cuts stream-copied segment files at keyframes (no re-encode).
* **extract_frames** samples a segment at `sample_fps` into one frame bundle.
* **detect_embed** runs the detect+embed worker command (DETR-family detector, CLIP-family crop
  embeddings) as a local process; the same argv runs in a GPU pod in production.
* **index** upserts the segment's objects into Weaviate and its frames and objects into Postgres.
* **finalize** checks both stores agree object for object and emits an asset event for the collection.

Great Expectations gates check every stage (probe, split, frames, detections, embeddings, index). A
failed gate stops that segment only: it is marked `quarantined` in the catalog with the failed
expectations, the other segments go on, and the run ends failed naming it. Each gate's result is kept
under `<storage root>/quality/<run id>/` (JSON and Markdown); the task log links it.

Every write is keyed by deterministic ids: running the same video again changes no count.

Retries, timeouts and pools are set per stage (`vidsearch_airflow/segment_tasks.py`): transient errors
(Weaviate 5xx, S3 throttling, network, a killed worker, a timeout) retry with exponential backoff,
permanent ones fail at once; `detect_embed` runs in the `gpu` pool and `index` in `weaviate_writers`.
A failed or quarantined segment is repaired by clearing its failed tasks (with downstream) in the grid,
or with the `reprocess_segments` DAG; done segments are left as they are (docs/operations.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import AssetAlias, Param, TriggerRule, dag, get_current_context, task
from vidsearch.records import SAMPLING_MODES
from vidsearch_airflow.segment_tasks import DEFAULT_ARGS, STAGES, ingest_params, segment_group, timed

COLLECTIONS_ALIAS = "vidsearch_collections"

PARAMS = {
    "source": Param(
        type="string",
        minLength=1,
        title="Video source",
        description="A local path, an http(s) URL or an s3:// URI of the video to ingest.",
    ),
    "collection": Param(
        "default",
        type="string",
        pattern=r"^[a-z][a-z0-9_]{0,62}$",
        title="Collection",
        description="Catalog collection to add the video's objects to (lowercase letters, digits, _).",
    ),
    "segment_seconds": Param(
        "auto",
        type=["string", "number"],
        pattern=r"^(auto|[0-9]+(\.[0-9]+)?)$",
        exclusiveMinimum=0,
        maximum=3600,
        title="Segment length (s)",
        description=(
            "auto (default): chosen from the video's length and the machine's parallel slots (30 s to 5 min "
            "at 1 frame/s), so each segment's tasks carry enough work and every slot stays busy. Or a nominal "
            "length in seconds; cuts land on the next keyframe. One mapped task group per segment."
        ),
    ),
    "sample_fps": Param(
        1,
        type="number",
        exclusiveMinimum=0,
        maximum=120,
        title="Sampling rate (frames/s)",
        description="Frames sampled per second of video for detection.",
    ),
    "sampling": Param(
        "fps",
        type="string",
        enum=list(SAMPLING_MODES),
        title="Sampling",
        description=(
            "fps: frames on a global grid of `sample_fps` per second. keyframes: every keyframe and nothing "
            "else decoded (much faster on long-GOP video; `sample_fps` is not used)."
        ),
    ),
    "time_limit_seconds": Param(
        None,
        type=["null", "number"],
        exclusiveMinimum=0,
        title="Time limit (s)",
        description="Only ingest the first N seconds of the video. Empty: the whole video.",
    ),
    "score_threshold": Param(
        0.7,
        type="number",
        minimum=0,
        maximum=1,
        title="Detection score threshold",
        description="Detections scoring below this are dropped.",
    ),
    "detector_model": Param(
        "facebook/detr-resnet-50",
        type="string",
        minLength=1,
        title="Detector model",
        description="A transformers object-detection model: hub id or local folder.",
    ),
    "embedder_model": Param(
        "openai/clip-vit-base-patch32",
        type="string",
        minLength=1,
        title="Embedder model",
        description="A CLIP-family model (hub id or local folder) embedding the object crops.",
    ),
}


def _params() -> Any:
    return ingest_params()


@dag(
    dag_id="video_ingest",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=8,
    default_args=DEFAULT_ARGS,
    params=PARAMS,
    tags=["vidsearch", "ingest"],
    doc_md=__doc__,
)
def video_ingest() -> None:
    @task(**STAGES["probe"].task_kwargs())
    def probe() -> dict:
        """Fetch the source, check it is a decodable video and stage it in object storage."""
        from vidsearch import pipeline
        from vidsearch_airflow.services import services

        with timed("probe"):
            ctx = get_current_context()
            out = pipeline.probe_video(services(), ctx["run_id"], ctx["dag"].dag_id, _params())
            return out.model_dump(mode="json")

    @task(**STAGES["split"].task_kwargs())
    def split(probed: dict) -> list[dict]:
        """Cut the video into keyframe-aligned segment files; one mapped group per segment follows."""
        from vidsearch import pipeline
        from vidsearch_airflow.services import services

        from vidsearch_airflow.gpu import min_segment_seconds

        with timed("split"):
            run_id = get_current_context()["run_id"]
            probed_out = pipeline.ProbeOutput.model_validate(probed)
            segs = pipeline.split_video(services(), run_id, _params(), probed_out, min_segment_seconds())
            return [s.model_dump(mode="json") for s in segs]

    # extract_frames → detect_embed → index, one mapped group per segment (shared with reprocess_segments).
    process_segment = segment_group("segment")

    # Runs once every segment is done, failed or quarantined (as long as something succeeded): the good
    # segments are still checked, and the run then ends failed naming the bad ones.
    @task(
        outlets=[AssetAlias(COLLECTIONS_ALIAS)],
        trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS,
        **STAGES["finalize"].task_kwargs(),
    )
    def finalize(probed: dict, *, outlet_events: Any = None) -> dict:
        """Check Postgres and Weaviate agree object for object; emit the collection's asset event."""
        from airflow.sdk import Asset

        from vidsearch import pipeline
        from vidsearch_airflow.services import services

        with timed("finalize"):
            params = _params()
            ctx = get_current_context()
            video_id = pipeline.ProbeOutput.model_validate(probed).manifest.video_id
            summary = pipeline.finalize(services(), ctx["run_id"], params, video_id)
            outlet_events[AssetAlias(COLLECTIONS_ALIAS)].add(
                Asset(f"vidsearch://collections/{params.collection}", group="vidsearch"),
                extra=summary.model_dump(mode="json"),
            )
            return summary.model_dump(mode="json")

    probed = probe()
    segments = split(probed)
    groups = process_segment.partial(probed=probed).expand(segment=segments)
    groups >> finalize(probed)


video_ingest()
