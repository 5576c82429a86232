"""Typed records passed between stages.

Small records travel between tasks as JSON (`model_dump(mode="json")` / `model_validate`); large data
(segment files, frame bundles, embeddings) lives in object storage and records carry only its URI.
All timestamps are seconds relative to the start of the video (the first presentation timestamp of its
video stream is 0).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# Namespace for deterministic object ids. Never change it: ids in Weaviate and Postgres depend on it.
OBJECT_NAMESPACE = uuid.UUID("6f1c1c52-7d2e-4c55-9a55-0d6a2f3e9b10")
TRACK_NAMESPACE = uuid.UUID("0b5e6f3a-2d41-4c1e-8f7a-3c9d5b2e7a64")
TRANSCRIPT_NAMESPACE = uuid.UUID("9a3d2c1e-5b7f-4e60-8c2a-1f4e6d8b0c37")


# An ingest run's segment length: seconds of video (cuts land on the next keyframe), or "auto" (chosen
# from the video's length and the parallel slots, `split.auto_segment_seconds`).
SegmentSeconds = Literal["auto"] | Annotated[float, Field(gt=0, le=3600)]
# How frames are sampled: "fps" (a global grid of sample_fps per second), "keyframes" (every
# keyframe, nothing else decoded) or "scenes" (a frame at each scene change, plus the sample_fps grid as a
# floor rate).
Sampling = Literal["fps", "keyframes", "scenes"]
SAMPLING_MODES: tuple[str, ...] = ("fps", "keyframes", "scenes")

# Content rules applied to the sampled frames before detection (`media/content.py`), in every mode.
# Their defaults live here; a run overrides them through `IngestParams`.
# A frame whose largest per-channel pixel std is not above this is blank (the frames gate's
# `blank_std_min` uses the same rule and default).
DEFAULT_BLANK_STD_MAX = 2.0
# A frame whose 64-bit perceptual hash is within this Hamming distance of the last kept frame of its
# segment (and whose 8x8 colour thumbnail is close to it) repeats that frame.
DEFAULT_DEDUPE_DISTANCE = 4
# ffmpeg's scene score (0..1, `select`'s `scene`) above which a frame starts a new scene.
DEFAULT_SCENE_THRESHOLD = 0.3


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class VideoManifest(Record):
    """What ffprobe says about one video, normalised."""

    video_id: str = Field(description="First 32 hex digits of the content's SHA-256.")
    source: str = Field(description="The source as the user gave it (path, URL or s3:// URI).")
    content_sha256: str
    size_bytes: int
    container: str
    duration_s: float = Field(gt=0)
    video_codec: str
    width: int = Field(gt=0, description="Display width, after rotation.")
    height: int = Field(gt=0, description="Display height, after rotation.")
    coded_width: int
    coded_height: int
    rotation: int = Field(description="Clockwise display rotation in degrees: 0, 90, 180 or 270.")
    frame_rate: float = Field(gt=0, description="Average frame rate (frames / duration).")
    nominal_frame_rate: float = Field(description="r_frame_rate: the stream's base rate.")
    variable_frame_rate: bool
    frame_count: int | None = None
    start_time_s: float = Field(description="PTS of the first video frame in the container's timeline.")
    has_audio: bool
    audio_codec: str | None = None


class Segment(Record):
    """A contiguous time range of one video, stored as its own file."""

    video_id: str
    index: int = Field(ge=0)
    start_s: float = Field(ge=0)
    end_s: float
    uri: str = Field(description="Object-storage URI of the segment file.")

    @property
    def name(self) -> str:
        return f"seg{self.index:04d}"

    @property
    def label(self) -> str:
        """Human name for logs and the Airflow grid, e.g. `seg0003 [00:30.000-00:40.000]`."""
        return f"{self.name} [{format_ts(self.start_s)}-{format_ts(self.end_s)}]"


class FrameRef(Record):
    """One sampled frame inside a bundle."""

    index: int = Field(ge=0, description="Position in the bundle.")
    pts_s: float = Field(ge=0, description="Exact presentation time relative to the video start.")
    member: str = Field(description="File name of the encoded frame inside the bundle.")
    # Content properties (bundles from before them load with the defaults: every frame detected).
    blank: bool = Field(False, description="A flat frame (no detail): not sent to detection.")
    duplicate_of: int | None = Field(
        None,
        ge=0,
        description="Index of the earlier kept frame of the bundle this one repeats (not sent to detection).",
    )
    scene_start: bool = Field(False, description="The frame starts a scene (`scenes` sampling only).")

    @property
    def detect(self) -> bool:
        """Whether detection runs on this frame (it is neither blank nor a repeat)."""
        return not self.blank and self.duplicate_of is None


class FrameBundle(Record):
    """All sampled frames of one segment: one object in storage, never one per frame."""

    video_id: str
    segment_index: int
    uri: str
    width: int
    height: int
    sample_fps: float
    frames: list[FrameRef]
    sampling: Sampling = Field(
        "fps",
        description="How the frames were chosen: `fps`, the global grid at sample_fps; `keyframes`, every "
        "keyframe of the segment (sample_fps unused); `scenes`, each scene change plus the sample_fps grid. "
        "Bundles from before the field are `fps`.",
    )

    def frames_skipped(self) -> dict[str, int]:
        """How many frames detection skips, by reason: {"blank": n, "duplicate": m}."""
        return {
            "blank": sum(1 for f in self.frames if f.blank),
            "duplicate": sum(1 for f in self.frames if not f.blank and f.duplicate_of is not None),
        }


class Box(Record):
    """Pixel box in display coordinates: x0 <= x1, y0 <= y1."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def area(self) -> float:
        return max(0.0, self.x1 - self.x0) * max(0.0, self.y1 - self.y0)


class DetectedObject(Record):
    """One detection; its embedding is stored next to it, row for row."""

    object_id: str
    video_id: str
    segment_index: int
    frame_index: int
    pts_s: float
    box: Box
    label: str
    label_id: int
    score: float = Field(ge=0, le=1)
    track: int | None = Field(
        None,
        ge=0,
        description="The segment-local track (0..n-1) the worker's tracker put this detection in; "
        "tracks are numbered by their first member in time order. None: not tracked.",
    )
    track_id: str | None = Field(
        None,
        description="The video-wide track (`track_id_of`): set at index time from the segment-local "
        "track, replaced at finalize where tracks are stitched across segment boundaries.",
    )


class DetectEmbedResult(Record):
    """What the detect+embed worker writes (besides the embedding matrix)."""

    video_id: str
    segment_index: int
    detector_model: str
    embedder_model: str
    embedding_dim: int
    detector_labels: list[str] = Field(
        default_factory=list, description="The detector's label set: every object's label is one of them."
    )
    device: str
    frame_count: int
    objects: list[DetectedObject]
    timings_s: dict[str, float] = Field(default_factory=dict)


class AudioClip(Record):
    """One segment's audio, cut for speech recognition: 16 kHz mono PCM (WAV) in object storage.

    The clip reaches `overlap_s` past each end of its segment (within the video), so a word spoken
    across a segment boundary is heard whole by one of the two segments; the words both hear are kept
    once (`vidsearch.transcripts.owned_chunks`: a chunk belongs to the segment its midpoint falls in)."""

    # rms_dbfs is -inf for digital silence: JSON writes it as the string "-Infinity", which reads back.
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="strings")

    video_id: str
    segment_index: int = Field(ge=0)
    uri: str = Field(description="Object-storage URI of the WAV file.")
    segment_start_s: float = Field(ge=0, description="The segment's own range (what it owns).")
    segment_end_s: float
    start_s: float = Field(ge=0, description="Where the clip starts in the video (segment start - overlap).")
    end_s: float = Field(description="Where the clip ends in the video (segment end + overlap).")
    sample_rate: int = 16_000
    rms_dbfs: float = Field(description="Loudness of the whole clip; -inf for digital silence.")
    speech_likely: bool = Field(description="Not silent: the clip is loud enough to hold speech.")


class TranscriptChunk(Record):
    """One timestamped phrase of a transcript; times relative to the video start."""

    chunk_id: str = Field(description="`transcript_chunk_id`: deterministic, so re-runs overwrite.")
    video_id: str
    segment_index: int = Field(ge=0)
    start_s: float = Field(ge=0)
    end_s: float
    text: str
    language: str | None = Field(None, description="ISO 639-1 code Whisper detected for the segment.")
    avg_logprob: float | None = Field(None, description="Mean token log-probability: the chunk's confidence.")
    no_speech_prob: float | None = Field(None, ge=0, le=1)


class TranscriptResult(Record):
    """What the transcribe worker writes for one segment (`transcript.json`)."""

    video_id: str
    segment_index: int = Field(ge=0)
    model: str
    device: str
    language: str | None = None
    language_probability: float | None = Field(None, ge=0, le=1)
    segment_start_s: float = Field(ge=0)
    segment_end_s: float
    clip_start_s: float = Field(ge=0)
    clip_end_s: float
    speech_likely: bool
    chunks: list[TranscriptChunk] = Field(description="The chunks this segment owns, in time order.")
    timings_s: dict[str, float] = Field(default_factory=dict)


def transcript_chunk_id(video_id: str, segment_index: int, start_s: float) -> str:
    """Deterministic transcript chunk id (uuid5 of the video, the segment and the start to the ms)."""
    return str(uuid.uuid5(TRANSCRIPT_NAMESPACE, f"{video_id}/{segment_index}/{start_s:.3f}"))


def object_id(video_id: str, segment_index: int, pts_s: float, box: Box) -> str:
    """Deterministic id: the same detection in a re-run gets the same id (an overwrite, not a copy)."""
    name = f"{video_id}/{segment_index}/{pts_s:.6f}/{box.x0:.2f},{box.y0:.2f},{box.x1:.2f},{box.y1:.2f}"
    return str(uuid.uuid5(OBJECT_NAMESPACE, name))


def track_id_of(video_id: str, first_object_id: str) -> str:
    """Deterministic track id: uuid5 of the video and the track's earliest member, so re-runs (and
    re-stitching) give the same ids."""
    return str(uuid.uuid5(TRACK_NAMESPACE, f"{video_id}/{first_object_id}"))


def format_ts(seconds: float) -> str:
    minutes, rest = divmod(max(seconds, 0.0), 60.0)
    return f"{int(minutes):02d}:{rest:06.3f}"
