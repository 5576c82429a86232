"""The per-segment work shared by `video_ingest` and `reprocess_segments`: one mapped task group per
segment, named after it in the grid, with two branches that run in parallel:

* frames: `extract_frames` → `detect_embed` → `index`;
* audio: `extract_audio` → `transcribe` → `index_transcript`. A video without an audio track (or a
  run with `transcribe: false`) skips it: the three tasks show as skipped, not failed. Its damage
  (a failed transcript gate) quarantines the segment's audio only.

Retries, timeouts and pools come from `policy.STAGES`; what each task does first (its name, log line,
timings) from `task_context`.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import get_current_context, task, task_group
from airflow.sdk.exceptions import AirflowSkipException

from vidsearch_airflow.gpu import DetectEmbedOperator, TranscribeOperator
from vidsearch_airflow.policy import STAGES
from vidsearch_airflow.task_context import begin_segment_task, ingest_params, name_segment, timed


def segment_group(group_id: str = "segment") -> Any:
    """The per-segment task group: map it over segment records with
    `segment_group().partial(probed=..., [ingest=...]).expand(segment=...)`.

    `probed` is probe's output (manifest + staged source URI); `ingest` (optional) the IngestParams
    as JSON, otherwise the run's params are used.
    """

    @task(map_index_template="{{ segment_label }}", **STAGES["extract_frames"].task_kwargs())
    def extract_frames(segment: dict, probed: dict, ingest: dict | None = None) -> dict:
        """Sample the segment's frames into one bundle."""
        from vidsearch import pipeline
        from vidsearch.records import Segment

        from vidsearch_airflow.services import services

        seg = Segment.model_validate(segment)
        name_segment(seg)
        with timed("extract_frames"):
            params, svc = ingest_params(ingest), services()
            begin_segment_task("extract_frames", seg, svc, params)
            manifest = pipeline.ProbeOutput.model_validate(probed).manifest
            run_id = get_current_context()["run_id"]
            bundle = pipeline.extract_frames(svc, run_id, params, seg, manifest)
            return bundle.model_dump(mode="json")

    @task(map_index_template="{{ segment_label }}", **STAGES["index"].task_kwargs())
    def index(segment: dict, bundle: dict, output_uri: str, ingest: dict | None = None) -> dict:
        """Upsert the segment's objects into Weaviate and its frames and objects into Postgres."""
        from vidsearch import pipeline
        from vidsearch.records import FrameBundle, Segment

        from vidsearch_airflow.services import services

        seg = Segment.model_validate(segment)
        name_segment(seg)
        with timed("index"):
            params, svc = ingest_params(ingest), services()
            begin_segment_task("index", seg, svc, params)
            run_id = get_current_context()["run_id"]
            bundle_record = FrameBundle.model_validate(bundle)
            return pipeline.index_segment(svc, run_id, params, seg, bundle_record, output_uri)

    @task(map_index_template="{{ segment_label }}", **STAGES["extract_audio"].task_kwargs())
    def extract_audio(segment: dict, probed: dict, ingest: dict | None = None) -> dict:
        """Cut the segment's audio (plus an overlap each side) for speech recognition."""
        from vidsearch import pipeline
        from vidsearch.records import Segment

        from vidsearch_airflow.services import services

        seg = Segment.model_validate(segment)
        name_segment(seg)
        with timed("extract_audio"):
            params, svc = ingest_params(ingest), services()
            begin_segment_task("extract_audio", seg, svc, params)
            probe_output = pipeline.ProbeOutput.model_validate(probed)
            clip = pipeline.extract_audio(svc, params, seg, probe_output)
            if clip is None:
                reason = pipeline.audio_skip_reason(probe_output.manifest, params)
                raise AirflowSkipException(f"{seg.label}: audio branch skipped: {reason}")
            return clip.model_dump(mode="json")

    @task(map_index_template="{{ segment_label }}", **STAGES["index_transcript"].task_kwargs())
    def index_transcript(segment: dict, transcript_uri: str, ingest: dict | None = None) -> dict:
        """Gate the segment's transcript and write its chunks to Weaviate and Postgres."""
        from vidsearch import pipeline
        from vidsearch.records import Segment

        from vidsearch_airflow.services import services

        seg = Segment.model_validate(segment)
        name_segment(seg)
        with timed("index_transcript"):
            params, svc = ingest_params(ingest), services()
            begin_segment_task("index_transcript", seg, svc, params)
            run_id = get_current_context()["run_id"]
            return pipeline.index_transcript(svc, run_id, params, seg, transcript_uri)

    @task_group(group_id=group_id)
    def process_segment(segment: dict, probed: dict, ingest: dict | None = None) -> None:
        bundle = extract_frames(segment=segment, probed=probed, ingest=ingest)
        # A local worker process or a GPU pod (Variable `vidsearch_gpu`), decided when it runs.
        output_uri = DetectEmbedOperator(
            task_id="detect_embed",
            segment=segment,
            bundle=bundle,
            ingest=ingest,
            map_index_template="{{ segment_label }}",
            **STAGES["detect_embed"].task_kwargs(),
        ).output
        # XComArgs stand for the upstream results until the tasks run.
        index(segment=segment, bundle=bundle, output_uri=output_uri, ingest=ingest)  # type: ignore[arg-type]

        # The audio branch, in parallel with the frames.
        clip = extract_audio(segment=segment, probed=probed, ingest=ingest)
        transcript_uri = TranscribeOperator(
            task_id="transcribe",
            segment=segment,
            clip=clip,
            probed=probed,
            ingest=ingest,
            map_index_template="{{ segment_label }}",
            **STAGES["transcribe"].task_kwargs(),
        ).output
        index_transcript(segment=segment, transcript_uri=transcript_uri, ingest=ingest)  # type: ignore[arg-type]

    return process_segment
