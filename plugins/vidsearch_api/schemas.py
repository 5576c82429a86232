"""The request and response bodies of the search API (docs/api.md), as pydantic models.

Bounds come from `vidsearch.search` and the label vocabulary from `vidsearch.stores.labels`, so the
OpenAPI schema, request validation and the service check the same facts.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field
from vidsearch.search import MAX_LABEL_IDS, MAX_LABEL_NAME, MAX_PROPAGATION_LIMIT
from vidsearch.stores.labels import Action, Polarity, Source


class Label(BaseModel):
    name: str
    polarity: Polarity
    source: Source
    score: float | None = None
    propagation_id: str | None = None


class Object(BaseModel):
    object_id: str
    video_id: str
    segment_index: int
    frame_index: int
    pts_s: float
    box: list[float] = Field(description="[x0, y0, x1, y1] in display pixels")
    detector_label: str
    score: float
    track_id: str | None = Field(None, description="the track the object belongs to (None: indexed before tracks)")
    crop_url: str
    labels: list[Label]


class ScoredObject(Object):
    similarity: float = Field(description="cosine similarity to the query, -1..1")


class Collection(BaseModel):
    name: str
    embedder_model: str
    embedding_dim: int
    videos: int
    objects: int


class Video(BaseModel):
    video_id: str
    source: str
    state: str
    duration_s: float | None
    width: int | None
    height: int | None
    frame_rate: float | None
    segments: int
    segments_done: int
    segments_quarantined: int
    frames: int
    objects: int
    last_run_id: str | None
    container: str | None = Field(None, description="ffprobe's container (format) name of the source")
    video_codec: str | None = None
    audio_codec: str | None = None
    media_type: str = Field(description="Content-Type of the stored source, e.g. video/mp4")
    playback_type: str = Field(
        description='media_type with an RFC 6381 codecs parameter for canPlayType, e.g. video/mp4; codecs="avc1.42E01E"'
    )
    video_url: str = Field(description="the ranged video route of this video (GET .../videos/{video_id}/video)")


class Frame(BaseModel):
    segment_index: int
    frame_index: int
    pts_s: float
    width: int
    height: int
    image_url: str
    objects: list[Object]


class FramePage(BaseModel):
    total: int
    frames: list[Frame]


class TrackLabel(BaseModel):
    name: str
    objects: int = Field(description="members carrying the label positively")


class Track(BaseModel):
    """One track of a video's timeline."""

    track_id: str
    start_pts_s: float
    end_pts_s: float
    object_count: int
    detector_label: str
    labels: list[TrackLabel]


class TrackResult(BaseModel):
    """A moment: one track (an object followed across frames), found through its best member."""

    track_id: str
    video_id: str
    start_pts_s: float = Field(description="first member's time, seconds from the video start")
    end_pts_s: float = Field(description="last member's time")
    object_count: int = Field(description="members: one detection per sampled frame it was seen in")
    label: str = Field(description="the detector label most of its members carry")
    similarity: float = Field(description="the best member's cosine similarity to the query")
    best: ScoredObject


class SimilarResults(BaseModel):
    query: Object
    group: Literal["object", "track"] = "object"
    results: list[ScoredObject] | list[TrackResult]


class ImageQuery(BaseModel):
    width: int
    height: int
    box: list[float] | None = Field(None, description="the part of the image searched with, if one was given")


class ImageResults(BaseModel):
    query: ImageQuery
    group: Literal["object", "track"] = "object"
    results: list[ScoredObject] | list[TrackResult]


class TextResults(BaseModel):
    query: str
    group: Literal["object", "track"] = "object"
    results: list[ScoredObject] | list[TrackResult]


class LabelCount(BaseModel):
    name: str
    positive: int = Field(description="human positive labels")
    negative: int = Field(description="human negative labels")
    propagated: int = Field(description="propagated (positive) labels not overridden by a human")


class LabelBody(BaseModel):
    object_ids: list[str] = Field(default_factory=list, max_length=MAX_LABEL_IDS)
    track_ids: list[str] = Field(
        default_factory=list, max_length=MAX_LABEL_IDS, description="label every member of these tracks"
    )
    name: str = Field(min_length=1, max_length=MAX_LABEL_NAME)
    polarity: Polarity


class UnlabelBody(BaseModel):
    object_ids: list[str] = Field(default_factory=list, max_length=MAX_LABEL_IDS)
    track_ids: list[str] = Field(default_factory=list, max_length=MAX_LABEL_IDS)
    name: str = Field(min_length=1, max_length=MAX_LABEL_NAME)


class PropagationBody(BaseModel):
    threshold: float = Field(ge=0, le=1)
    limit: int = Field(1000, ge=1, le=MAX_PROPAGATION_LIMIT, description="objects, or tracks with unit=track")
    unit: Literal["object", "track"] = Field(
        "object",
        description="score single objects, or whole tracks by their track vectors (every member of a "
        "chosen track is labelled)",
    )


class Candidate(BaseModel):
    object_id: str
    score: float


class TrackCandidate(BaseModel):
    track_id: str
    score: float
    object_count: int = Field(description="members it would label")


class Preview(BaseModel):
    count: int = Field(description="objects it would label")
    candidates: list[Candidate]
    tracks: list[TrackCandidate] = Field(default_factory=list, description="with unit=track: the chosen tracks")


class Propagated(BaseModel):
    propagation_id: str
    count: int


class Propagation(BaseModel):
    propagation_id: str
    sources: list[str]
    negatives: list[str]
    model: str
    threshold: float
    unit: Literal["object", "track"] = "object"
    count: int
    created_at: Any
    created_by: str
    undone_at: Any = None


class Event(BaseModel):
    id: int
    object_id: str | None
    name: str
    action: Action
    polarity: Polarity | None
    source: Source | None
    propagation_id: str | None
    actor: str
    at: Any


class Updated(BaseModel):
    updated: int


class Removed(BaseModel):
    removed: int


# -- transcripts ---------------------------------------------------------------------------------------


class MomentFrame(BaseModel):
    """The sampled frame nearest a moment's start."""

    segment_index: int
    frame_index: int
    pts_s: float
    image_url: str


class TranscriptChunk(BaseModel):
    chunk_id: str
    video_id: str
    segment_index: int
    start_s: float = Field(description="seconds from the video start")
    end_s: float
    text: str
    language: str | None = None
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    frame: MomentFrame | None = Field(None, description="the sampled frame nearest its start")


class TranscriptMoment(TranscriptChunk):
    """A transcript search hit."""

    highlighted: str = Field(description="the text HTML-escaped, the query's words in <mark>: safe as innerHTML")
    score: float = Field(description="BM25 score (keyword) or fused score (hybrid); higher is better")


class TranscriptResults(BaseModel):
    query: str
    mode: Literal["keyword", "hybrid"]
    results: list[TranscriptMoment]


class MatchedChunk(TranscriptChunk):
    highlighted: str
    score: float = Field(description="ts_rank of the full-text match")


class SaidWhileVisible(BaseModel):
    """One overlap of a matching chunk with the time something named was visible."""

    start_s: float = Field(description="max of the chunk's and the visible range's starts")
    end_s: float = Field(description="min of their ends")
    chunk: MatchedChunk
    track_ids: list[str] = Field(description="tracks visible then")
    labels: list[str] = Field(description="detector labels of what was visible")
    object_ids: list[str] = Field(description="detections seen in it (the first ones, at most 50)")
    object_count: int
    frame: MomentFrame | None = None


class VideoMoments(BaseModel):
    video_id: str
    moments: list[SaidWhileVisible]


class MomentResults(BaseModel):
    said: str
    visible_label: str | None
    label: str | None
    chunks_matched: int = Field(description="chunks matching `said` that were read")
    truncated: bool = Field(description="more chunks matched than one query reads")
    videos: list[VideoMoments]


class SegmentAudio(BaseModel):
    segment_index: int
    status: Literal["pending", "done", "skipped", "quarantined", "failed"]
    language: str | None = None
    language_probability: float | None = None
    chunk_count: int
    model: str | None = None
    error: str | None = None
    failed_expectations: Any = None
    updated_at: Any = None


class VideoTranscript(BaseModel):
    video_id: str
    chunks: list[TranscriptChunk]
    audio: list[SegmentAudio] = Field(description="each segment's audio state")
