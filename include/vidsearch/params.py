"""The parameters of one ingest run, defined once.

`IngestParams` carries every field, default and bound. The rest is generated from it:

* the trigger form of `video_ingest` (`form_schema`: one JSON schema per form field, in the flat style
  Airflow's `Param` and its form understand; the plugin wraps each in a `Param`);
* a channel's `ingest:` settings (`optional_fields`: the same fields, each optional, bounds kept), so
  a typo in the channels file fails when it is loaded, not in a triggered run.

The collection-name rule and the default model ids live here too; every other place imports them.
This module imports nothing but pydantic and the records (the detect+embed worker uses it).
"""

from __future__ import annotations

import copy
import re
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import Field, model_validator
from pydantic.fields import FieldInfo

from vidsearch.records import (
    DEFAULT_BLANK_STD_MAX,
    DEFAULT_DEDUPE_DISTANCE,
    DEFAULT_SCENE_THRESHOLD,
    Record,
    Sampling,
    SegmentSeconds,
)

# A collection name: lowercase letters, digits and '_', starting with a letter (it is part of Weaviate
# class names and of object-storage paths).
COLLECTION_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
COLLECTION_NAME_RE = re.compile(COLLECTION_NAME_PATTERN)
CollectionName = Annotated[str, Field(pattern=COLLECTION_NAME_PATTERN)]
DEFAULT_COLLECTION = "default"

DEFAULT_DETECTOR = "facebook/detr-resnet-50"
DEFAULT_EMBEDDER = "openai/clip-vit-base-patch32"
DEFAULT_ASR_MODEL = "openai/whisper-base"
# How far each segment's audio clip reaches into its neighbours (seconds): a word spoken across a cut
# is heard whole by one side; the chunks both hear are kept once (`vidsearch.transcripts`).
DEFAULT_AUDIO_OVERLAP_S = 1.0

# A number typed into the trigger form's text box arrives as a string.
# An unanswered review of a quarantined segment drops it after a day (configurable per run).
ReviewChoice = Literal["reprocess", "accept", "drop"]
REVIEW_CHOICES: tuple[str, ...] = get_args(ReviewChoice)  # the options of a review task, in order
DEFAULT_REVIEW_CHOICE: ReviewChoice = "drop"
DEFAULT_REVIEW_TIMEOUT_HOURS = 24.0

_NUMBER_TEXT = r"[0-9]+(\.[0-9]+)?"

# How a collection's vectors are compressed in Weaviate's HNSW index: none (full float32 vectors in
# memory), rq8 / rq1 (rotational quantisation, 8 or 1 bits per dimension, rescored from the full
# vectors on disk), sq (8-bit scalar), pq (product), bq (binary; rescored).
Quantizer = Literal["none", "rq8", "rq1", "sq", "pq", "bq"]
INDEX_SETTINGS_ENV = "VIDSEARCH_INDEX_SETTINGS"
RESCORING = ("rq8", "rq1", "sq")  # the quantizers that re-score their candidates with full vectors


class IndexSettings(Record):
    """A Weaviate collection's vector index, fixed when the collection is created (a collection
    created before keeps its own: HNSW graphs and quantisers cannot be rebuilt in place). Defaults:
    Weaviate's (exact distances; results stable at every size). For large collections
    `make bench-search-sweep` measured rq8 (rescore 200) with efConstruction 256 better on recall and
    memory (docs/deployment.md, Sizing); it is not the default because quantised distances reorder
    near-equal results between queries of different k, which small collections show."""

    ef: int = Field(-1, ge=-1, le=10_000, description="Search list size; -1: dynamic (dynamic_ef_*).")
    dynamic_ef_min: int = Field(100, ge=1, le=10_000)
    dynamic_ef_max: int = Field(500, ge=1, le=10_000)
    dynamic_ef_factor: int = Field(8, ge=1, le=1_000, description="Dynamic ef is limit x this, within min..max.")
    ef_construction: int = Field(128, ge=4, le=4_096, description="Build-time search list size.")
    max_connections: int = Field(32, ge=4, le=256, description="Graph degree per layer.")
    quantizer: Quantizer = "none"
    rescore_limit: int | None = Field(
        None, ge=1, le=10_000, description="Candidates re-scored with full vectors (rq, sq); None: Weaviate's."
    )

    @model_validator(mode="before")
    @classmethod
    def _no_default_rescore_without_rescoring(cls, data: Any) -> Any:
        # The default rescore limit belongs to the default quantizer: another one without rescoring
        # (none, pq, bq) named without a rescore limit gets none.
        if isinstance(data, dict) and data.get("quantizer", "none") not in RESCORING and "rescore_limit" not in data:
            return {**data, "rescore_limit": None}
        return data

    @model_validator(mode="after")
    def _rescore_needs_a_rescoring_quantizer(self) -> IndexSettings:
        if self.rescore_limit is not None and self.quantizer not in RESCORING:
            raise ValueError(f"rescore_limit applies to the rq8, rq1 and sq quantizers, not {self.quantizer!r}")
        return self


class IngestParams(Record):
    """The knobs of one ingest run (the DAG's trigger form)."""

    # The fields the trigger form shows, in its order; the others are for programmatic callers.
    FORM_FIELDS: ClassVar[tuple[str, ...]] = (
        "source",
        "collection",
        "segment_seconds",
        "sample_fps",
        "sampling",
        "time_limit_seconds",
        "score_threshold",
        "detector_model",
        "embedder_model",
        "transcribe",
        "asr_model",
    )

    source: str = Field(
        min_length=1,
        title="Video source",
        description="A local path, an http(s) URL or an s3:// URI of the video to ingest.",
    )
    collection: CollectionName = Field(
        DEFAULT_COLLECTION,
        title="Collection",
        description="Catalog collection to add the video's objects to (lowercase letters, digits, _).",
    )
    segment_seconds: SegmentSeconds = Field(
        "auto",
        title="Segment length (s)",
        description=(
            "auto (default): chosen from the video's length and the machine's parallel slots (30 s to 5 min "
            "at 1 frame/s), so each segment's tasks carry enough work and every slot stays busy. Or a nominal "
            "length in seconds; cuts land on the next keyframe. One mapped task group per segment."
        ),
    )
    sample_fps: float = Field(
        1.0,
        gt=0,
        le=120,
        title="Sampling rate (frames/s)",
        description="Frames sampled per second of video for detection.",
    )
    sampling: Sampling = Field(
        "fps",
        title="Sampling",
        description=(
            "fps: frames on a global grid of `sample_fps` per second. keyframes: every keyframe and nothing "
            "else decoded (much faster on long-GOP video; `sample_fps` is not used). scenes: a frame at each "
            "scene change, plus the `sample_fps` grid as a floor rate (at least one frame every 1/sample_fps s). "
            "In every mode, blank frames and repeats of the previous kept frame are not sent to detection."
        ),
    )
    time_limit_seconds: float | None = Field(
        None,
        gt=0,
        title="Time limit (s)",
        description="Only ingest the first N seconds of the video. Empty: the whole video.",
    )
    score_threshold: float = Field(
        0.7,
        ge=0,
        le=1,
        title="Detection score threshold",
        description="Detections scoring below this are dropped.",
    )
    detector_model: str = Field(
        DEFAULT_DETECTOR,
        min_length=1,
        title="Detector model",
        description="A transformers object-detection model: hub id or local folder.",
    )
    embedder_model: str = Field(
        DEFAULT_EMBEDDER,
        min_length=1,
        title="Embedder model",
        description="A CLIP-family model (hub id or local folder) embedding the object crops.",
    )
    transcribe: bool = Field(
        True,
        title="Transcribe speech",
        description="Run the audio branch: each segment's audio is transcribed beside its frames (skipped, "
        "not failed, for a video without audio).",
    )
    asr_model: str = Field(
        DEFAULT_ASR_MODEL,
        min_length=1,
        title="Speech recognition model",
        description="A transformers Whisper model (hub id such as openai/whisper-tiny, or a local folder).",
    )
    asr_language: str | None = Field(
        None,
        pattern=r"^[a-z]{2,3}$",
        description="The spoken language (ISO 639-1, e.g. en) when known; None: Whisper detects it per segment.",
    )
    audio_overlap_s: float = Field(
        DEFAULT_AUDIO_OVERLAP_S,
        ge=0,
        le=10,
        description="Seconds each segment's audio clip reaches past its ends (words at a cut are kept once).",
    )
    batch_size: int = Field(16, ge=1, description="Frames per detector batch.")
    # Content rules (`vidsearch.media.content`); not on the form: a run conf sets them.
    scene_threshold: float = Field(
        DEFAULT_SCENE_THRESHOLD,
        gt=0,
        lt=1,
        description="`scenes` sampling: ffmpeg's scene score (0..1) above which a frame starts a scene.",
    )
    blank_std_max: float = Field(
        DEFAULT_BLANK_STD_MAX,
        ge=0,
        description="A frame whose largest per-channel pixel std is not above this is blank (not detected).",
    )
    dedupe_distance: int | None = Field(
        DEFAULT_DEDUPE_DISTANCE,
        ge=0,
        le=64,
        description="A frame within this Hamming distance (64-bit perceptual hash) of the segment's last kept "
        "frame repeats it (not detected). None: no deduplication.",
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps.")
    # The review of quarantined segments (video_ingest's `review` tasks; docs/operations.md).
    review: bool = Field(
        True,
        description="Ask a human to review each quarantined segment (reprocess, accept or drop). "
        "False: quarantined segments stay quarantined and finalize fails naming them.",
    )
    review_timeout_hours: float = Field(
        DEFAULT_REVIEW_TIMEOUT_HOURS,
        gt=0,
        description="How long a review waits for an answer before its default applies.",
    )
    review_default: ReviewChoice = Field(
        DEFAULT_REVIEW_CHOICE, description="The decision applied when nobody answers a review in time."
    )
    index: IndexSettings | None = Field(
        None,
        description="The vector index of the collection, when this run creates it (ignored for an existing "
        f"collection). None: `{INDEX_SETTINGS_ENV}` (JSON of IndexSettings), else the defaults.",
    )

    @classmethod
    def from_conf(cls, conf: dict[str, Any]) -> IngestParams:
        """The params of a run conf or form, ignoring keys that are not params."""
        return cls.model_validate({k: v for k, v in conf.items() if k in cls.model_fields})


def _flatten(schema: dict[str, Any]) -> dict[str, Any]:
    """One property's JSON schema in the flat style of Airflow's trigger form.

    pydantic writes a union as `anyOf`; the form wants one `type` list with the bounds beside it (JSON
    schema applies a bound only to the type it constrains). String constants in a union with numbers
    become a pattern that also admits a number typed as text.
    """
    out = {k: v for k, v in schema.items() if k != "anyOf"}
    if "anyOf" not in schema:
        if "const" in out and "enum" not in out:
            out["enum"] = [out.pop("const")]
        return out
    types: list[str] = []
    constants: list[str] = []
    for branch in schema["anyOf"]:
        kind = branch["type"]
        if kind == "string" and ("const" in branch or "enum" in branch):
            constants += [branch["const"]] if "const" in branch else list(branch["enum"])
        else:
            out.update({k: v for k, v in branch.items() if k != "type"})
        if kind not in types:
            types.append(kind)
    if constants:
        alternatives = [re.escape(c) for c in constants]
        if "number" in types or "integer" in types:
            alternatives.append(_NUMBER_TEXT)
        out["pattern"] = f"^({'|'.join(alternatives)})$"
    # Nullable first, as the form lists it: an empty box means None.
    out["type"] = sorted(types, key=lambda t: t != "null")
    return out


def form_schema() -> dict[str, dict[str, Any]]:
    """name -> JSON schema (with `default` when the field has one) of each trigger-form field."""
    properties = IngestParams.model_json_schema()["properties"]
    schemas = {name: _flatten(properties[name]) for name in IngestParams.FORM_FIELDS}
    for schema in schemas.values():
        # The form checks patterns with JSON Schema's re.search, where `$` also matches before a
        # final newline; pydantic's engine (no look-ahead) does not need this.
        if str(schema.get("pattern", "")).endswith("$"):
            schema["pattern"] += r"(?!\n)"
    return schemas


def optional_fields(exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The form fields as `create_model` definitions: each optional (default None), its bounds kept."""
    fields: dict[str, Any] = {}
    for name in IngestParams.FORM_FIELDS:
        if name in exclude:
            continue
        info: FieldInfo = copy.copy(IngestParams.model_fields[name])
        info.default = None
        annotation = info.annotation
        assert annotation is not None  # every IngestParams field is annotated
        fields[name] = (annotation | None, info)
    return fields
