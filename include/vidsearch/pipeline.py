"""The ingest pipeline as plain functions: one per DAG task, each one transaction over one partition.

The DAG (`dags/video_ingest.py`) only wires these together; they take their external clients through
`Services` so that tests, the Airflow tasks and a plain script run the same code. Inputs and outputs
are typed records; what crosses task boundaries is their JSON form (small: ids, URIs, counts).
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path
from typing import Callable, Optional

from pydantic import Field

from . import catalog as cat
from . import frames, launcher, probe, sources, split, storage
from .errors import PermanentError, QualityGateError
from .index import ObjectIndex, validate_collection_name, weaviate_collection_name
from .records import FrameBundle, Record, Segment, VideoManifest

log = logging.getLogger(__name__)

MAX_SEGMENTS = 1024  # Airflow's max_map_length: one mapped task per segment


class IngestParams(Record):
    """The knobs of one ingest run (the DAG's trigger form)."""

    source: str = Field(min_length=1)
    collection: str = "default"
    segment_seconds: float = Field(10.0, gt=0)
    sample_fps: float = Field(1.0, gt=0)
    time_limit_seconds: Optional[float] = Field(None, gt=0)
    score_threshold: float = Field(0.7, ge=0, le=1)
    detector_model: str = "facebook/detr-resnet-50"
    embedder_model: str = "openai/clip-vit-base-patch32"
    batch_size: int = Field(16, ge=1)
    device: str = "auto"


@dataclasses.dataclass
class Services:
    """External systems one pipeline step may use."""

    catalog: cat.Catalog
    index: Callable[[], ObjectIndex]  # lazy: only index steps connect to Weaviate
    storage_root: str
    tiny_models: bool = False
    model_cache: Optional[str] = None


class ProbeOutput(Record):
    manifest: VideoManifest
    source_uri: str


def video_root(svc: Services, video_id: str) -> str:
    return storage.join(svc.storage_root, "videos", video_id)


def probe_video(svc: Services, run_id: str, dag_id: str, params: IngestParams) -> ProbeOutput:
    """Fetch and probe the source; only a valid video is copied to object storage and cataloged.

    A permanent failure is recorded on the run (one line) before it propagates.
    """
    validate_collection_name(params.collection)
    svc.catalog.start_run(run_id, dag_id, params.collection, params.source, params.model_dump(mode="json"))
    try:
        with tempfile.TemporaryDirectory(prefix="vidsearch-probe-") as tmp:
            local = sources.fetch_source(params.source, Path(tmp))
            manifest = probe.probe_video(local, params.source)
            suffix = local.suffix.lower() if len(local.suffix) <= 6 else ""
            source_uri = storage.join(video_root(svc, manifest.video_id), f"source{suffix}")
            if not storage.exists(source_uri):
                storage.upload(local, source_uri)
    except PermanentError as exc:
        svc.catalog.end_run(run_id, cat.RunState.FAILED, error=_one_line(exc))
        raise
    svc.catalog.upsert_video(params.collection, manifest, source_uri, run_id)
    svc.catalog.end_run(run_id, cat.RunState.RUNNING, video_id=manifest.video_id)
    log.info(
        "probed %s: video %s, %.3f s, %dx%d @ %.3f fps%s, audio=%s",
        params.source,
        manifest.video_id,
        manifest.duration_s,
        manifest.width,
        manifest.height,
        manifest.frame_rate,
        " (variable)" if manifest.variable_frame_rate else "",
        manifest.has_audio,
    )
    return ProbeOutput(manifest=manifest, source_uri=source_uri)


def split_video(svc: Services, params: IngestParams, probed: ProbeOutput) -> list[Segment]:
    """Cut the video into segment files and record the plan (every segment pending)."""
    manifest = probed.manifest
    covered = min(manifest.duration_s, params.time_limit_seconds or manifest.duration_s)
    if covered / params.segment_seconds > MAX_SEGMENTS:
        raise PermanentError(
            f"{covered:.0f} s in segments of {params.segment_seconds:g} s makes more than "
            f"{MAX_SEGMENTS} segments: raise segment_seconds"
        )
    svc.index().ensure_collection(params.collection)
    with storage.local_file(probed.source_uri) as local:
        segments = split.run_split(
            local,
            manifest,
            params.segment_seconds,
            params.time_limit_seconds,
            storage.join(video_root(svc, manifest.video_id), "segments"),
        )
    svc.catalog.upsert_segments(params.collection, segments)
    log.info("split %s into %d segments", manifest.video_id, len(segments))
    return segments


def _mark_failed(svc: Services, params: IngestParams, segment: Segment, exc: BaseException) -> None:
    state = cat.SegmentState.QUARANTINED if isinstance(exc, QualityGateError) else cat.SegmentState.FAILED
    try:
        svc.catalog.set_segment_state(params.collection, segment.video_id, segment.index, state, _one_line(exc))
    except Exception:  # noqa: BLE001 - the original error matters more than the bookkeeping
        log.exception("could not record the failure of %s", segment.label)


def extract_frames(svc: Services, params: IngestParams, segment: Segment, video_start_s: float = 0.0) -> FrameBundle:
    """Sample one segment into one frame bundle in object storage."""
    try:
        bundle_uri = storage.join(video_root(svc, segment.video_id), "frames", f"{segment.name}.zip")
        bundle = frames.run_frames(
            segment,
            params.sample_fps,
            bundle_uri,
            time_limit_s=params.time_limit_seconds,
            video_start_s=video_start_s,
        )
    except Exception as exc:
        _mark_failed(svc, params, segment, exc)
        raise
    log.info("%s: %d frames sampled at %g fps", segment.label, len(bundle.frames), params.sample_fps)
    return bundle


def detections_uri(svc: Services, bundle: FrameBundle) -> str:
    return storage.join(video_root(svc, bundle.video_id), "objects", f"seg{bundle.segment_index:04d}")


def worker_argv(svc: Services, params: IngestParams, bundle: FrameBundle) -> list[str]:
    """The detect+embed command for one segment: the same argv for a local process or a GPU pod."""
    return launcher.worker_argv(
        frames_uri=bundle.uri,
        output_uri=detections_uri(svc, bundle),
        detector=params.detector_model,
        embedder=params.embedder_model,
        score_threshold=params.score_threshold,
        batch_size=params.batch_size,
        device=params.device,
        tiny=svc.tiny_models,
        model_cache=svc.model_cache,
    )


def detect_and_embed_locally(svc: Services, params: IngestParams, segment: Segment, bundle: FrameBundle) -> str:
    """Run the worker command as a local process; returns the URI of its output."""
    try:
        launcher.run_local(worker_argv(svc, params, bundle))
    except Exception as exc:
        _mark_failed(svc, params, segment, exc)
        raise
    return detections_uri(svc, bundle)


def index_segment(
    svc: Services, params: IngestParams, segment: Segment, bundle: FrameBundle, output_uri: str
) -> dict[str, int]:
    """Write one segment's objects to Weaviate, then its frames and objects to Postgres (done)."""
    try:
        result, vectors = launcher.read_result(output_uri)
        svc.catalog.register_collection(
            params.collection,
            result.embedder_model,
            result.embedding_dim,
            weaviate_collection_name(params.collection),
        )
        svc.index().upsert_segment(params.collection, segment.video_id, segment.index, result.objects, vectors)
        svc.catalog.write_segment_index(
            params.collection, bundle, result.objects, result.detector_model, result.embedder_model
        )
    except Exception as exc:
        _mark_failed(svc, params, segment, exc)
        raise
    log.info("%s: indexed %d objects from %d frames", segment.label, len(result.objects), len(bundle.frames))
    return {"frames": len(bundle.frames), "objects": len(result.objects)}


class IngestSummary(Record):
    video_id: str
    collection: str
    segments: int
    segments_done: int
    frames: int
    objects: int
    weaviate_objects: int


def finalize(svc: Services, run_id: str, params: IngestParams, video_id: str) -> IngestSummary:
    """Check that Postgres and Weaviate agree object for object, then close the run."""
    states = svc.catalog.segment_states(params.collection, video_id)
    pg_counts = svc.catalog.counts(params.collection, video_id)
    index = svc.index()
    pg_ids = svc.catalog.object_ids(params.collection, video_id)
    wv_ids: set[str] = set()
    for seg_index in states:
        wv_ids.update(index.ids(params.collection, video_id, seg_index))
    summary = IngestSummary(
        video_id=video_id,
        collection=params.collection,
        segments=len(states),
        segments_done=sum(1 for s in states.values() if s["state"] == cat.SegmentState.DONE.value),
        frames=pg_counts["frames"],
        objects=pg_counts["objects"],
        weaviate_objects=len(wv_ids),
    )
    problems = []
    if pg_ids != wv_ids:
        problems.append(
            f"stores disagree: {len(pg_ids - wv_ids)} objects only in Postgres, "
            f"{len(wv_ids - pg_ids)} only in Weaviate"
        )
    not_done = sorted(i for i, s in states.items() if s["state"] != cat.SegmentState.DONE.value)
    if not_done:
        problems.append(f"segments not done: {not_done}")
    if problems:
        message = "; ".join(problems)
        svc.catalog.end_run(run_id, cat.RunState.FAILED, error=message, summary=summary.model_dump())
        raise PermanentError(message)
    svc.catalog.set_video_state(params.collection, video_id, "done")
    svc.catalog.end_run(run_id, cat.RunState.SUCCESS, video_id=video_id, summary=summary.model_dump())
    log.info("finalized %s: %s", video_id, summary.model_dump())
    return summary


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:1000]
