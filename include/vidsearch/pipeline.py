"""The ingest pipeline as plain functions: one per DAG task, each one transaction over one partition.

The DAG (`dags/video_ingest.py`) only wires these together; they take their external clients through
`Services` so that tests, the Airflow tasks and a plain script run the same code. Inputs and outputs
are typed records; what crosses task boundaries is their JSON form (small: ids, URIs, counts).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlparse

import numpy as np
from pydantic import Field

from vidsearch import quality, tracks
from vidsearch.errors import PermanentError, QualityGateError, TransientError, one_line
from vidsearch.media import audio, frames, probe, sources, split
from vidsearch.media.content import ContentRules
from vidsearch.models import launcher
from vidsearch.params import IngestParams
from vidsearch.records import AudioClip, DetectEmbedResult, FrameBundle, Record, Segment, VideoManifest
from vidsearch.stores import catalog as cat
from vidsearch.stores import storage
from vidsearch.stores.index import ObjectIndex, validate_collection_name, weaviate_collection_name
from vidsearch.stores.transcripts import TranscriptStore

log = logging.getLogger(__name__)

MAX_SEGMENTS = split.MAX_MAPPED_SEGMENTS


PARALLEL_SLOTS_ENV = "VIDSEARCH_PARALLEL_SLOTS"


def parallel_slots() -> int:
    """How many segments run their CPU stages at once: VIDSEARCH_PARALLEL_SLOTS, else this machine's
    cores (the embedded stack sizes its `cpu` pool the same way)."""
    value = os.environ.get(PARALLEL_SLOTS_ENV, "").strip()
    if value:
        try:
            slots = int(value)
        except ValueError:
            slots = 0
        if slots < 1:
            raise PermanentError(f"{PARALLEL_SLOTS_ENV} must be a whole number >= 1, got {value!r}")
        return slots
    return os.cpu_count() or 1


@dataclasses.dataclass
class Services:
    """External systems one pipeline step may use."""

    catalog: cat.Catalog
    index: Callable[[], ObjectIndex]  # lazy: only index steps connect to Weaviate
    storage_root: str
    tiny_models: bool = False
    model_cache: str | None = None


class ProbeOutput(Record):
    manifest: VideoManifest
    source_uri: str


def video_root(svc: Services, video_id: str) -> str:
    return storage.join(svc.storage_root, "videos", video_id)


def quality_root(svc: Services, run_id: str) -> str:
    """Where one run's validation results live: `<root>/quality/<run id>/`."""
    return storage.join(svc.storage_root, "quality", re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id))


def gate(svc: Services, run_id: str, result: quality.GateResult) -> quality.GateResult:
    """Keep a gate's result with the run (JSON + Markdown) and stop the work if it failed."""
    report = quality.write_report(result, quality_root(svc, run_id))
    if result.success:
        log.info("%s gate passed for %s (%d expectations): %s", result.stage, result.subject, result.evaluated, report)
    else:
        log.error("%s; report: %s", result.summary(), report)
    return quality.enforce(result)


def probe_video(
    svc: Services, run_id: str, dag_id: str, params: IngestParams, check_models: Callable[[], None] | None = None
) -> ProbeOutput:
    """Fetch and probe the source; only a valid video is copied to object storage and cataloged.

    `check_models` (e.g. `check_models_locally`) loads the run's detector and embedder where
    detect+embed will run, at the same time as the fetch and probe: a model that cannot be loaded
    fails the run here, before the video is staged, split or sampled. A permanent failure is recorded
    on the run (one line) before it propagates.
    """
    validate_collection_name(params.collection)
    source = sources.redact_url(params.source)  # what is recorded and logged: no credentials
    svc.catalog.start_run(
        run_id, dag_id, params.collection, source, {**params.model_dump(mode="json"), "source": source}
    )
    try:
        with (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-check") as pool,
            tempfile.TemporaryDirectory(prefix="vidsearch-probe-") as tmp,
        ):
            models_checked = pool.submit(check_models) if check_models is not None else None
            local = sources.fetch_source(params.source, Path(tmp))
            # The probe gate (size, frame rate) judges ffprobe's data before the probe decodes anything.
            manifest = probe.probe_video(
                local, source, before_decode=lambda m: gate(svc, run_id, quality.check_probe(m))
            )
            if models_checked is not None:
                models_checked.result()
            suffix = local.suffix.lower() if len(local.suffix) <= 6 else ""
            source_uri = storage.join(video_root(svc, manifest.video_id), f"source{suffix}")
            if not storage.exists(source_uri):
                storage.upload(local, source_uri)
    except PermanentError as exc:
        svc.catalog.end_run(run_id, cat.RunState.FAILED, error=one_line(exc))
        raise
    svc.catalog.upsert_video(params.collection, manifest, source_uri, run_id)
    svc.catalog.end_run(
        run_id, cat.RunState.RUNNING, video_id=manifest.video_id, quality_report=quality_root(svc, run_id)
    )
    log.info(
        "probed %s: video %s, %.3f s, %dx%d @ %.3f fps%s, audio=%s",
        source,
        manifest.video_id,
        manifest.duration_s,
        manifest.width,
        manifest.height,
        manifest.frame_rate,
        " (variable)" if manifest.variable_frame_rate else "",
        manifest.has_audio,
    )
    return ProbeOutput(manifest=manifest, source_uri=source_uri)


def planned_segment_seconds(params: IngestParams, covered_s: float, min_segment_s: float | None = None) -> float:
    """The nominal segment length for `covered_s` seconds of video: the explicit value, or for
    "auto" `split.auto_segment_seconds` over `parallel_slots()`, at least `min_segment_s` (a GPU pod
    per segment must amortise its start)."""
    if params.segment_seconds == "auto":
        return split.auto_segment_seconds(covered_s, parallel_slots(), params.sample_fps, min_segment_s=min_segment_s)
    return float(params.segment_seconds)


def split_video(
    svc: Services, run_id: str, params: IngestParams, probed: ProbeOutput, min_segment_s: float | None = None
) -> list[Segment]:
    """Cut the video into segment files, gate the cut, and record the plan (every segment pending).

    `min_segment_s`: the shortest segment `segment_seconds: auto` may plan (see
    `planned_segment_seconds`)."""
    manifest = probed.manifest
    covered = min(manifest.duration_s, params.time_limit_seconds or manifest.duration_s)
    segment_seconds = planned_segment_seconds(params, covered, min_segment_s)
    if covered / segment_seconds > MAX_SEGMENTS:
        raise PermanentError(
            f"{covered:.0f} s in segments of {segment_seconds:g} s makes more than "
            f"{MAX_SEGMENTS} segments: raise segment_seconds"
        )
    svc.index().ensure_collection(params.collection, params.index)
    try:
        with storage.local_file(probed.source_uri) as local:
            segments = split.run_split(
                local,
                manifest,
                segment_seconds,
                params.time_limit_seconds,
                storage.join(video_root(svc, manifest.video_id), "segments"),
            )
        gate(svc, run_id, quality.check_split(manifest, segments, params.time_limit_seconds))
    except PermanentError as exc:
        # Nothing of this run is usable: the run and the video end failed (never left `ingesting`).
        svc.catalog.end_run(run_id, cat.RunState.FAILED, error=one_line(exc))
        svc.catalog.set_video_state(params.collection, manifest.video_id, cat.VideoState.FAILED.value)
        raise
    svc.catalog.upsert_segments(params.collection, segments)
    log.info(
        "split %s into %d segments (segment_seconds %s: %g s)",
        manifest.video_id,
        len(segments),
        params.segment_seconds,
        segment_seconds,
    )
    return segments


def mark_segment_failed(svc: Services, params: IngestParams, segment: Segment, exc: BaseException) -> None:
    """Record a segment's failure. A failed quality gate quarantines it: whatever an earlier run
    indexed for it is removed from both stores, so they hold exactly the good segments."""
    gate_result = getattr(exc, "gate_result", None)
    try:
        if isinstance(exc, QualityGateError):
            svc.index().delete_segment(params.collection, segment.video_id, segment.index)
            svc.catalog.quarantine_segment(
                params.collection,
                segment.video_id,
                segment.index,
                one_line(exc),
                [f.model_dump(mode="json") for f in gate_result.failed] if gate_result else None,
            )
        else:
            svc.catalog.set_segment_state(
                params.collection, segment.video_id, segment.index, cat.SegmentState.FAILED, one_line(exc)
            )
    except Exception:
        log.exception("could not record the failure of %s", segment.label)


def extract_frames(
    svc: Services, run_id: str, params: IngestParams, segment: Segment, manifest: VideoManifest
) -> FrameBundle:
    """Sample one segment into one frame bundle in object storage, then gate the frames.

    The bundle marks blank frames and repeats (the run's content rules); they stay in it, and
    detection skips them."""
    sampling = params.sampling
    try:
        bundle_uri = storage.join(video_root(svc, segment.video_id), "frames", f"{segment.name}.zip")
        # The gate's per-frame stats are computed while extracting (from the RGB frames before JPEG
        # encoding): the bundle is never decoded back, so memory stays flat whatever its length.
        stats: list[dict] = []
        decode_errors: list[str] = []  # counted in the one decode that extracts the frames
        with storage.local_file(segment.uri, suffix=".mkv") as local:
            # The segment file's own damage (timing, empty packets, an undecodable start)
            # quarantines this segment only; the split gate judged the cut as a whole.
            gate(svc, run_id, quality.check_segment(manifest, segment, quality.segment_facts(local)))
            bundle = frames.run_frames(
                segment,
                params.sample_fps,
                bundle_uri,
                time_limit_s=params.time_limit_seconds,
                video_start_s=manifest.start_time_s,
                expected_size=(manifest.width, manifest.height),
                sampling=sampling,
                stats=stats,
                decode_errors=decode_errors,
                scene_threshold=params.scene_threshold,
                content=ContentRules(blank_std_max=params.blank_std_max, dedupe_distance=params.dedupe_distance),
                local_path=local,
            )
        gate(
            svc,
            run_id,
            quality.check_frames(
                segment,
                bundle,
                stats,
                params.sample_fps,
                params.time_limit_seconds,
                source_fps=manifest.frame_rate,
                decoder_errors=decode_errors,
            ),
        )
    except Exception as exc:
        mark_segment_failed(svc, params, segment, exc)
        raise
    skipped = bundle.frames_skipped()
    if sampling == "keyframes":
        log.info("%s: %d keyframes sampled, skipped for detection: %s", segment.label, len(bundle.frames), skipped)
    elif sampling == "scenes":
        log.info(
            "%s: %d frames sampled (%d scene starts, floor %g fps), skipped for detection: %s",
            segment.label,
            len(bundle.frames),
            sum(1 for f in bundle.frames if f.scene_start),
            params.sample_fps,
            skipped,
        )
    else:
        log.info(
            "%s: %d frames sampled at %g fps, skipped for detection: %s",
            segment.label,
            len(bundle.frames),
            params.sample_fps,
            skipped,
        )
    return bundle


def detections_uri(svc: Services, bundle: FrameBundle) -> str:
    return storage.join(video_root(svc, bundle.video_id), "objects", f"seg{bundle.segment_index:04d}")


_UNSET = object()
# Loading (on first use: downloading) both models: generous, a download of full-size weights included.
MODEL_CHECK_TIMEOUT_S = 900.0


def worker_argv(
    svc: Services,
    params: IngestParams,
    bundle: FrameBundle,
    *,
    dtype: str = "float32",
    model_cache: str | None | object = _UNSET,
) -> list[str]:
    """The detect+embed command for one segment: the same argv for a local process or a GPU pod.

    A pod gets `model_cache=None`: it uses its image's default (or the mounted cache), not this
    machine's folder.
    """
    return launcher.worker_argv(
        frames_uri=bundle.uri,
        output_uri=detections_uri(svc, bundle),
        detector=params.detector_model,
        embedder=params.embedder_model,
        score_threshold=params.score_threshold,
        batch_size=params.batch_size,
        device=params.device,
        tiny=svc.tiny_models,
        dtype=dtype,
        model_cache=svc.model_cache if model_cache is _UNSET else cast("str | None", model_cache),
    )


def model_check_argv(
    svc: Services, params: IngestParams, *, dtype: str = "float32", model_cache: str | None | object = _UNSET
) -> list[str]:
    """The worker command that loads the run's detector and embedder and nothing else."""
    return launcher.check_argv(
        params.detector_model,
        params.embedder_model,
        params.device,
        svc.tiny_models,
        dtype=dtype,
        model_cache=svc.model_cache if model_cache is _UNSET else cast("str | None", model_cache),
    )


def check_models_locally(svc: Services, params: IngestParams) -> None:
    """Load the run's models where local detect+embed runs (the warm worker, else a worker process)."""
    launcher.check_models_local(model_check_argv(svc, params), timeout_s=MODEL_CHECK_TIMEOUT_S)


def detect_and_embed_locally(svc: Services, params: IngestParams, segment: Segment, bundle: FrameBundle) -> str:
    """Run the worker command as a local process; returns the URI of its output."""
    try:
        launcher.run_local(worker_argv(svc, params, bundle))
    except Exception as exc:
        mark_segment_failed(svc, params, segment, exc)
        raise
    return detections_uri(svc, bundle)


def detect_and_embed_on_service(
    svc: Services,
    params: IngestParams,
    segment: Segment,
    bundle: FrameBundle,
    argv: list[str],
    url: str,
    token: str | None,
    timeout_s: float,
) -> str:
    """Run the worker command as a job of the warm-worker service at `url`; returns its output URI."""
    try:
        launcher.run_on_service(argv, url, token, timeout_s)
    except Exception as exc:
        mark_segment_failed(svc, params, segment, exc)
        raise
    return detections_uri(svc, bundle)


def index_segment(
    svc: Services, run_id: str, params: IngestParams, segment: Segment, bundle: FrameBundle, output_uri: str
) -> dict[str, int]:
    """Gate the detections and embeddings, write the segment's objects to Weaviate, then its frames
    and objects to Postgres (marking it done), then gate that both stores hold the same objects."""
    try:
        result, vectors = launcher.read_result(output_uri)
        gate(
            svc,
            run_id,
            quality.check_detections(result, bundle, params.score_threshold, set(result.detector_labels)),
        )
        registered = svc.catalog.get_collection(params.collection)
        expected_dim = registered["embedding_dim"] if registered else result.embedding_dim
        gate(svc, run_id, quality.check_embeddings(result, vectors, expected_dim))
        index = svc.index()
        store_segment(svc, params.collection, bundle, result, vectors)
        gate(
            svc,
            run_id,
            quality.check_index(
                segment.name,
                svc.catalog.object_ids(params.collection, segment.video_id, segment.index),
                set(index.ids(params.collection, segment.video_id, segment.index)),
            ),
        )
    except Exception as exc:
        mark_segment_failed(svc, params, segment, exc)
        raise
    log.info("%s: indexed %d objects from %d frames", segment.label, len(result.objects), len(bundle.frames))
    return {"frames": len(bundle.frames), "objects": len(result.objects)}


def store_segment(
    svc: Services, collection: str, bundle: FrameBundle, result: DetectEmbedResult, vectors: np.ndarray
) -> None:
    """Write one segment's results to both stores: its objects (with their track ids) and its
    parts' track vectors to Weaviate, then its frames and objects to Postgres (marking it done)."""
    svc.catalog.register_collection(
        collection, result.embedder_model, result.embedding_dim, weaviate_collection_name(collection)
    )
    index = svc.index()
    objects = tracks.with_track_ids(result.objects)
    index.upsert_segment(collection, bundle.video_id, bundle.segment_index, objects, vectors)
    index.replace_segment_tracks(
        collection, bundle.video_id, bundle.segment_index, tracks.part_tracks(objects, vectors)
    )
    svc.catalog.write_segment_index(collection, bundle, objects, result.detector_model, result.embedder_model)


# ---------------------------------------------------------------------------------------------------
# The audio branch: extract_audio -> transcribe -> index_transcript, beside the frames of each segment
# ---------------------------------------------------------------------------------------------------


def transcript_store(svc: Services) -> TranscriptStore:
    return TranscriptStore(svc.catalog.engine)


def audio_clip_uri(svc: Services, segment: Segment) -> str:
    """Where a segment's AudioClip record lives (its WAV is next to it)."""
    return storage.join(video_root(svc, segment.video_id), "audio", f"{segment.name}.json")


def transcript_output_uri(svc: Services, segment: Segment) -> str:
    return storage.join(video_root(svc, segment.video_id), "transcripts", segment.name)


def audio_end_s(manifest: VideoManifest, params: IngestParams) -> float:
    """Where the ingested part of the video ends: its duration, or the run's time limit."""
    end = manifest.duration_s
    return min(end, params.time_limit_seconds) if params.time_limit_seconds else end


def audio_skip_reason(manifest: VideoManifest, params: IngestParams) -> str | None:
    """Why a run's audio branch does not run (None: it runs)."""
    if not params.transcribe:
        return "transcription is off for this run (transcribe: false)"
    if not manifest.has_audio:
        return "the video has no audio track"
    return None


def mark_audio_failed(svc: Services, params: IngestParams, segment: Segment, exc: BaseException) -> None:
    """Record an audio-branch failure. A failed transcript gate quarantines the segment's audio only
    (its transcript leaves both stores; its frames and objects stay as they are)."""
    gate_result = getattr(exc, "gate_result", None)
    store = transcript_store(svc)
    try:
        if isinstance(exc, QualityGateError):
            svc.index().delete_transcripts(params.collection, segment.video_id, segment.index)
            store.mark_audio(
                params.collection,
                segment.video_id,
                segment.index,
                "quarantined",
                error=one_line(exc),
                failed_expectations=[f.model_dump(mode="json") for f in gate_result.failed] if gate_result else None,
                model=params.asr_model,
            )
        else:
            store.mark_audio(
                params.collection,
                segment.video_id,
                segment.index,
                "failed",
                error=one_line(exc),
                model=params.asr_model,
            )
    except Exception:
        log.exception("could not record the audio failure of %s", segment.label)


def extract_audio(svc: Services, params: IngestParams, segment: Segment, probed: ProbeOutput) -> AudioClip | None:
    """Cut one segment's audio (its range plus `audio_overlap_s` each side, 16 kHz mono WAV) from the
    staged source into object storage, with its AudioClip record next to it. None when the branch
    does not run for this video (no audio track, transcription off): recorded as skipped."""
    manifest = probed.manifest
    store = transcript_store(svc)
    reason = audio_skip_reason(manifest, params)
    if reason is not None:
        store.mark_audio(params.collection, segment.video_id, segment.index, "skipped", error=reason)
        svc.index().delete_transcripts(params.collection, segment.video_id, segment.index)  # an earlier run's
        log.info("%s: audio branch skipped: %s", segment.label, reason)
        return None
    try:
        clip_uri = audio_clip_uri(svc, segment)
        wav_uri = clip_uri.removesuffix(".json") + ".wav"
        # From S3, ffmpeg reads the seconds it needs through a presigned URL, not a copy of the whole source.
        with storage.media_input(probed.source_uri) as source, tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / f"{segment.name}.wav"
            clip = audio.extract_audio_clip(
                source,
                segment.video_id,
                segment,
                audio_end_s(manifest, params),
                params.audio_overlap_s,
                wav,
                uri=wav_uri,
                name=Path(urlparse(probed.source_uri).path).name,
            )
            storage.upload(wav, wav_uri)
        storage.write_bytes(clip_uri, clip.model_dump_json().encode())
        store.mark_audio(params.collection, segment.video_id, segment.index, "pending", model=params.asr_model)
    except Exception as exc:
        mark_audio_failed(svc, params, segment, exc)
        raise
    log.info(
        "%s: audio %.3f-%.3f s, %.1f dBFS%s",
        segment.label,
        clip.start_s,
        clip.end_s,
        clip.rms_dbfs,
        "" if clip.speech_likely else " (silent: nothing to transcribe)",
    )
    return clip


def transcribe_argv(
    svc: Services,
    params: IngestParams,
    segment: Segment,
    manifest: VideoManifest,
    *,
    dtype: str = "float32",
    model_cache: str | None | object = _UNSET,
) -> list[str]:
    """The transcribe command for one segment: the same argv for a local process, the warm worker or
    a pod (`model_cache=None` for a pod, as `worker_argv`)."""
    return launcher.transcriber_argv(
        audio_clip_uri(svc, segment),
        transcript_output_uri(svc, segment),
        params.asr_model,
        params.embedder_model,
        last_segment=segment.end_s >= audio_end_s(manifest, params) - 1e-3,
        language=params.asr_language or "auto",
        device=params.device,
        tiny=svc.tiny_models,
        dtype=dtype,
        model_cache=svc.model_cache if model_cache is _UNSET else cast("str | None", model_cache),
    )


def index_transcript(
    svc: Services, run_id: str, params: IngestParams, segment: Segment, output_uri: str
) -> dict[str, Any]:
    """Gate a segment's transcript, write its chunks to Weaviate (BM25 text and text vectors) and then
    Postgres (marking the segment's audio done), then check both hold the same chunks."""
    store = transcript_store(svc)
    try:
        result, vectors = launcher.read_transcript(output_uri)
        gate(svc, run_id, quality.check_transcript(result))
        index = svc.index()
        index.replace_segment_transcripts(params.collection, segment.video_id, segment.index, result.chunks, vectors)
        store.replace_segment(
            params.collection,
            segment.video_id,
            segment.index,
            result.chunks,
            model=result.model,
            language=result.language,
            language_probability=result.language_probability,
        )
        in_weaviate = set(index.transcript_ids(params.collection, segment.video_id, segment.index))
        in_postgres = {c.chunk_id for c in result.chunks}
        if in_weaviate != in_postgres:
            raise TransientError(
                f"{segment.label}: transcript stores disagree ({len(in_postgres - in_weaviate)} chunks only in "
                f"Postgres, {len(in_weaviate - in_postgres)} only in Weaviate)"
            )
    except Exception as exc:
        mark_audio_failed(svc, params, segment, exc)
        raise
    log.info(
        "%s: indexed %d transcript chunks (language %s)", segment.label, len(result.chunks), result.language or "-"
    )
    return {"chunks": len(result.chunks), "language": result.language}


class IngestSummary(Record):
    video_id: str
    collection: str
    state: str = cat.RunState.DONE.value  # the run's and the video's state: done, partial or failed
    segments: int
    segments_done: int  # done or accepted: the segments whose objects are searchable
    segments_accepted: list[int] = Field(default_factory=list)
    segments_quarantined: list[int] = Field(default_factory=list)
    segments_failed: list[int] = Field(default_factory=list)
    segments_dropped: list[int] = Field(default_factory=list)
    frames: int
    frames_skipped: dict[str, int] = Field(
        default_factory=dict, description="Frames detection skipped, by reason (blank, duplicate)."
    )
    objects: int
    weaviate_objects: int
    tracks: int = Field(0, description="Tracks of the video's searchable objects, stitched across segments.")
    audio: dict[str, int] = Field(
        default_factory=dict, description="Segments by the state of their audio branch (done, skipped, ...)."
    )
    transcript_chunks: int = 0


# Audio-branch states that still need someone (its tasks failed, or never finished): finalize fails.
# A quarantined transcript is reported, not fatal: the segment's frames and objects are searchable.
UNRESOLVED_AUDIO_STATES = ("failed", "pending")

# Segment states that still need someone: reprocessing or a review. Finalize fails while any is left.
UNRESOLVED_SEGMENT_STATES = (cat.SegmentState.QUARANTINED, cat.SegmentState.FAILED, cat.SegmentState.PENDING)


def run_video_id(svc: Services, run_id: str) -> str:
    """The video a run probed; PermanentError (the run's own error) when probe never got that far."""
    run = svc.catalog.get_run(run_id)
    if run is None or not run["video_id"]:
        raise PermanentError((run or {}).get("error") or f"run {run_id} probed no video")
    return str(run["video_id"])


def finalize(svc: Services, run_id: str, params: IngestParams, video_id: str | None = None) -> IngestSummary:
    """Check that Postgres and Weaviate agree object for object, then close the run and the video in
    the state their segments add up to (`catalog.outcome_state`): done, partial or failed.

    Runs whatever happened before it (the DAGs give it trigger rule ALL_DONE): a run that failed at
    probe or split is closed failed with the error that step recorded. It raises (the Airflow task
    fails, naming the segments) when the run is failed or any segment still needs someone (failed,
    quarantined or not run: reprocess or review it); a video that is partial only because a reviewer
    dropped segments is a decision, not a failure, and finalize succeeds.
    """
    if video_id is None:
        video_id = run_video_id(svc, run_id)
    run = svc.catalog.get_run(run_id)
    if run and run["state"] == cat.RunState.FAILED.value and run["error"]:
        svc.catalog.set_video_state(params.collection, video_id, cat.VideoState.FAILED.value)
        raise PermanentError(run["error"])
    states = svc.catalog.segment_states(params.collection, video_id)
    pg_counts = svc.catalog.counts(params.collection, video_id)
    index = svc.index()
    pg_ids = svc.catalog.object_ids(params.collection, video_id)
    wv_ids: set[str] = set()
    for seg_index in states:
        wv_ids.update(index.ids(params.collection, video_id, seg_index))

    def in_state(state: cat.SegmentState) -> list[int]:
        return sorted(i for i, s in states.items() if s["state"] == state.value)

    outcome = cat.outcome_state(s["state"] for s in states.values())
    problems = []
    if pg_ids != wv_ids:
        outcome = cat.RunState.FAILED
        problems.append(
            f"stores disagree: {len(pg_ids - wv_ids)} objects only in Postgres, {len(wv_ids - pg_ids)} only in Weaviate"
        )
    track_count = 0
    if pg_ids == wv_ids and any(s["state"] in cat.USABLE_SEGMENT_STATES for s in states.values()):
        track_count = tracks.stitch_video(svc.catalog, index, params.collection, video_id, states=states).tracks
    for state in UNRESOLVED_SEGMENT_STATES:
        hit = [s for s in states.values() if s["state"] == state.value]
        if hit:
            problems.append(
                f"{len(hit)} segment(s) {state.value}: "
                + ", ".join(f"seg{s['segment_index']:04d} ({s['error'] or 'not run'})" for s in hit)
            )
    if not states:
        problems.append("no segments")
    transcripts = transcript_store(svc)
    audio_rows = transcripts.audio_status(params.collection, video_id)
    for audio_state in UNRESOLVED_AUDIO_STATES:
        hit = [a for a in audio_rows if a["status"] == audio_state]
        if hit:
            problems.append(
                f"audio of {len(hit)} segment(s) {audio_state}: "
                + ", ".join(f"seg{a['segment_index']:04d} ({a['error'] or 'not finished'})" for a in hit)
            )
    pg_chunks = set(transcripts.chunk_ids(params.collection, video_id))
    wv_chunks = set(index.transcript_ids(params.collection, video_id))
    if pg_chunks != wv_chunks:
        problems.append(
            f"transcript stores disagree: {len(pg_chunks - wv_chunks)} chunks only in Postgres, "
            f"{len(wv_chunks - pg_chunks)} only in Weaviate"
        )
    summary = IngestSummary(
        video_id=video_id,
        collection=params.collection,
        state=outcome.value,
        segments=len(states),
        segments_done=sum(1 for s in states.values() if s["state"] in cat.USABLE_SEGMENT_STATES),
        segments_accepted=in_state(cat.SegmentState.ACCEPTED),
        segments_quarantined=in_state(cat.SegmentState.QUARANTINED),
        segments_failed=in_state(cat.SegmentState.FAILED),
        segments_dropped=in_state(cat.SegmentState.DROPPED),
        frames=pg_counts["frames"],
        frames_skipped=svc.catalog.frames_skipped(params.collection, video_id),
        objects=pg_counts["objects"],
        weaviate_objects=len(wv_ids),
        tracks=track_count,
        audio=dict(Counter(a["status"] for a in audio_rows)),
        transcript_chunks=len(pg_chunks),
    )
    message = "; ".join(problems) or None
    svc.catalog.end_run(run_id, outcome, error=message, video_id=video_id, summary=summary.model_dump())
    svc.catalog.set_video_state(params.collection, video_id, outcome.value)
    if message:
        raise PermanentError(message)
    log.info("finalized %s (%s): %s", video_id, outcome.value, summary.model_dump())
    return summary


def close_abandoned_run(svc: Services, run_id: str, reason: str) -> cat.RunState | None:
    """Close a run that ended without its finalize (killed, marked failed, timed out): the run and
    its video get the state their segments add up to, with `reason` as the run's error. A run
    already closed is left as it is; returns the state set, or None."""
    run = svc.catalog.get_run(run_id)
    if run is None or run["state"] != cat.RunState.RUNNING.value:
        return None
    state = cat.RunState.FAILED
    if run["video_id"]:
        segs = svc.catalog.segment_states(run["collection"], run["video_id"])
        state = cat.outcome_state(s["state"] for s in segs.values())
        svc.catalog.set_video_state(run["collection"], run["video_id"], state.value)
    svc.catalog.end_run(run_id, state, error=reason)
    log.warning("closed abandoned run %s as %s: %s", run_id, state.value, reason)
    return state


# Airflow DAG run states after which no task of the run will run again (until someone clears it).
AIRFLOW_ENDED = frozenset({"success", "failed"})


def close_abandoned_runs(svc: Services, airflow_run_state: Callable[[str, str], str | None]) -> dict[str, str]:
    """Close every catalog run still `running` whose Airflow DAG run has ended: its finalize never
    ran or never finished (the run was marked failed by hand, finalize was killed). Airflow fires no
    callback and runs no task when a run is marked failed, so this sweep is what closes such runs.

    `airflow_run_state(dag_id, run_id)` gives the Airflow state of a run, None when Airflow does not
    know it (logged and left open). A run Airflow still works on is left alone. Returns {run id:
    state set}."""
    closed: dict[str, str] = {}
    for run in svc.catalog.running_runs():
        state = airflow_run_state(run["dag_id"], run["run_id"])
        if state is None:
            log.warning("Airflow knows no run %s of %s: left open", run["run_id"], run["dag_id"])
            continue
        if state not in AIRFLOW_ENDED:
            continue
        ended = close_abandoned_run(svc, run["run_id"], f"the Airflow run ended {state} before finalize closed it")
        if ended is not None:
            closed[run["run_id"]] = ended.value
    return closed
