"""The expectation suites, one per stage, as data.

Thresholds are GX suite parameters (`$PARAMETER`) filled per call, so one suite object per stage
serves every run and configuration.

The rule every expectation follows: damage quarantines a segment, content never does. Each `Check`
names the damage it catches (`damage`, kept in the GX expectation's meta). Black, flat, static, very
short or letterboxed footage, fades and title cards are content: no expectation looks at pixel values.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    pass

log = logging.getLogger(__name__)


def _param(name: str) -> dict[str, str]:
    """A GX suite parameter reference, filled per validation from the gate's parameters."""
    return {"$PARAMETER": name}


@dataclass(frozen=True)
class Check:
    """One expectation of a suite: the GX class name, its kwargs, a short human description and the
    damage it catches (why it may fail a segment)."""

    expectation: str
    description: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    damage: str = ""


@dataclass(frozen=True)
class SuiteSpec:
    stage: str
    row_id: str | None  # column naming each row; GX reports it for unexpected rows
    checks: tuple[Check, ...]


def _between(column: str, description: str, damage: str, **kwargs: Any) -> Check:
    return Check("ExpectColumnValuesToBeBetween", description, {"column": column, **kwargs}, damage)


def _in_set(column: str, value_set: Any, description: str, damage: str) -> Check:
    return Check("ExpectColumnValuesToBeInSet", description, {"column": column, "value_set": value_set}, damage)


SUITES: dict[str, SuiteSpec] = {
    spec.stage: spec
    for spec in (
        SuiteSpec(
            "probe",
            None,  # one row: naming it adds nothing
            (
                Check(
                    "ExpectColumnValuesToNotBeNull",
                    "duration is known",
                    {"column": "duration_s"},
                    "container without timing (no duration in header or packets)",
                ),
                _between(
                    "duration_s",
                    "duration > 0",
                    "empty or truncated container (a single frame still has a duration)",
                    min_value=0,
                    strict_min=True,
                ),
                Check(
                    "ExpectColumnValueLengthsToBeBetween",
                    "a video stream exists (video codec named)",
                    {"column": "video_codec", "min_value": 1},
                    "stream header missing or unreadable",
                ),
                Check(
                    "ExpectColumnValuesToNotBeNull",
                    "frame rate is known",
                    {"column": "frame_rate"},
                    "stream timing unreadable",
                ),
                _between(
                    "frame_rate",
                    "frame rate within [min_fps, max_fps]",
                    "implausible frame rate: broken timing metadata",
                    min_value=_param("min_fps"),
                    max_value=_param("max_fps"),
                ),
                _between(
                    "width",
                    "width within [min_dim, max_dim]",
                    "implausible frame size: broken stream header",
                    min_value=_param("min_dim"),
                    max_value=_param("max_dim"),
                ),
                _between(
                    "height",
                    "height within [min_dim, max_dim]",
                    "implausible frame size: broken stream header",
                    min_value=_param("min_dim"),
                    max_value=_param("max_dim"),
                ),
            ),
        ),
        SuiteSpec(
            "split",
            "segment",
            (
                Check(
                    "ExpectTableRowCountToBeBetween",
                    "at least one segment",
                    {"min_value": 1},
                    "the muxer wrote nothing: unreadable stream",
                ),
                Check(
                    "ExpectColumnPairValuesToBeEqual",
                    "segments numbered 0..n-1 in order",
                    {"column_A": "index", "column_B": "position"},
                    "lost or reordered segment files",
                ),
                _between(
                    "gap_s",
                    "no gap or overlap with the previous segment beyond the tolerance (one keyframe interval)",
                    "lost or duplicated stretch of video",
                    min_value=_param("neg_tolerance_s"),
                    max_value=_param("tolerance_s"),
                ),
                _between(
                    "length_s",
                    "segment duration > 0",
                    "segment with no time span: broken timestamps",
                    min_value=0,
                    strict_min=True,
                ),
                Check(
                    "ExpectColumnMaxToBeBetween",
                    "segments reach the end of the covered range (duration or time limit)",
                    {"column": "end_s", "min_value": _param("end_min_s"), "max_value": _param("end_max_s")},
                    "video cut short: truncated file or header duration that lies",
                ),
            ),
        ),
        # One row: one segment file, gated by its own segment task, so damage in one file
        # quarantines that segment and the others go on.
        SuiteSpec(
            "segment",
            "segment",
            (
                _between(
                    "packet_count",
                    "segment file has video packets",
                    "empty segment file: the copy lost the stream",
                    min_value=1,
                ),
                _in_set(
                    "decodable",
                    [True],
                    "first frame of the segment file decodes",
                    "undecodable keyframe at the segment start",
                ),
                _between(
                    "start_offset_s",
                    "segment file starts at the segment start (within the tolerance)",
                    "segment file timestamps disagree with the cut",
                    min_value=_param("neg_tolerance_s"),
                    max_value=_param("tolerance_s"),
                ),
                _between(
                    "end_excess_s",
                    "segment file reaches the segment end (within one frame plus the tolerance)",
                    "segment file ends early: frames lost in the copy",
                    max_value=_param("tolerance_s"),
                ),
                _between(
                    "untimed_packet_fraction",
                    "packets without timestamps (no PTS, no DTS) within max_untimed_packet_fraction",
                    "broken container timing: the demuxer cannot place most packets in time",
                    min_value=0,
                    max_value=_param("max_untimed_packet_fraction"),
                ),
                _between(
                    "empty_packet_fraction",
                    "empty (zero-size) packets within max_empty_packet_fraction",
                    "damaged or padded stream: packets that carry no data",
                    min_value=0,
                    max_value=_param("max_empty_packet_fraction"),
                ),
                _between(
                    "dts_backwards",
                    "decode timestamps never go backwards",
                    "timestamps out of order: a broken mux",
                    max_value=0,
                ),
            ),
        ),
        SuiteSpec(
            "frames",
            "frame",
            (
                Check(
                    "ExpectTableRowCountToBeBetween",
                    "frame count ~ segment duration x sample_fps",
                    {"min_value": _param("count_min"), "max_value": _param("count_max")},
                    "frames lost or duplicated: truncated segment or broken timestamps",
                ),
                Check(
                    "ExpectColumnValuesToBeIncreasing",
                    "frame timestamps strictly increasing",
                    {"column": "pts_s", "strictly": True},
                    "timestamps out of order or duplicated",
                ),
                _between(
                    "pts_s",
                    "frame timestamps inside [segment start, segment end)",
                    "frames outside their segment: broken timestamps",
                    min_value=_param("start_s"),
                    max_value=_param("end_s"),
                    strict_max=True,
                ),
                _in_set("decoded", [True], "every frame decodes", "undecodable or truncated frames"),
                Check(
                    "ExpectColumnUniqueValueCountToBeBetween",
                    "one consistent frame size",
                    {"column": "size", "min_value": 0, "max_value": 1},
                    "frame size changes within a segment: corrupt stream parameters",
                ),
                _in_set(
                    "size",
                    _param("bundle_size"),
                    "frame size equals the bundle's",
                    "decoded frames disagree with the stream header",
                ),
                Check(
                    "ExpectColumnSumToBeBetween",
                    "no decoder errors while decoding the segment (within max_decoder_errors)",
                    {"column": "decoder_errors", "min_value": 0, "max_value": _param("max_decoder_errors")},
                    "damaged bitstream: the decoder reported errors (concealed or dropped macroblocks)",
                ),
            ),
        ),
        SuiteSpec(
            "detections",
            "object",
            (
                _in_set("finite", [True], "box coordinates and score are finite", "NaN/inf model output"),
                _between("x0", "box inside the frame: x0 >= 0", "out-of-range model output", min_value=0),
                _between("y0", "box inside the frame: y0 >= 0", "out-of-range model output", min_value=0),
                _between(
                    "x1", "box inside the frame: x1 <= width", "out-of-range model output", max_value=_param("width")
                ),
                _between(
                    "y1",
                    "box inside the frame: y1 <= height",
                    "out-of-range model output",
                    max_value=_param("height"),
                ),
                Check(
                    "ExpectColumnPairValuesAToBeGreaterThanB",
                    "box x0 < x1",
                    {"column_A": "x1", "column_B": "x0", "or_equal": False},
                    "inverted box: broken model output",
                ),
                Check(
                    "ExpectColumnPairValuesAToBeGreaterThanB",
                    "box y0 < y1",
                    {"column_A": "y1", "column_B": "y0", "or_equal": False},
                    "inverted box: broken model output",
                ),
                _between("area", "box area > 0", "degenerate box: broken model output", min_value=0, strict_min=True),
                _between("score", "score in [0, 1]", "out-of-range model output", min_value=0, max_value=1),
                _between(
                    "score",
                    "score >= the run's score_threshold",
                    "the detector ignored the threshold: wrong model or argv",
                    min_value=_param("score_threshold"),
                ),
                _in_set(
                    "label",
                    _param("labels"),
                    "label from the detector's label set",
                    "output from another model or a corrupt result file",
                ),
                _in_set(
                    "frame_index",
                    _param("frame_indexes"),
                    "detection's frame is in the bundle",
                    "result belongs to another bundle: stale or mixed-up output",
                ),
            ),
        ),
        SuiteSpec(
            "embeddings",
            "row",
            (
                _in_set(
                    "has_vector",
                    [True],
                    "an embedding row for every object",
                    "truncated result: vectors missing",
                ),
                Check(
                    "ExpectColumnValuesToNotBeNull",
                    "an object for every embedding row",
                    {"column": "object_id"},
                    "result mismatch: vectors without objects",
                ),
                _in_set(
                    "dim",
                    _param("expected_dim"),
                    "vector dimension equals the collection's",
                    "wrong embedder for the collection",
                ),
                _in_set(
                    "declared_dim",
                    _param("expected_dim"),
                    "result.embedding_dim equals the collection's",
                    "wrong embedder for the collection",
                ),
                _between("nonfinite_values", "all values finite", "NaN/inf model output", max_value=0),
                _between(
                    "norm",
                    "unit L2 norm (within unit_norm_tol)",
                    "unnormalised or corrupt vectors: search scores would be wrong",
                    min_value=_param("norm_min"),
                    max_value=_param("norm_max"),
                ),
                Check(
                    "ExpectColumnValuesToBeUnique",
                    "no duplicate object ids",
                    {"column": "object_id"},
                    "duplicate ids: an id scheme or merge bug",
                ),
            ),
        ),
        # One row per transcript chunk. Zero chunks pass: Whisper emits nothing for noise, music or a
        # quiet room, so an empty transcript is content, even where the clip is loud enough to hold
        # speech (`speech_likely`). Result-wide facts (its language) ride on every row.
        SuiteSpec(
            "transcript",
            "chunk",
            (
                _in_set(
                    "same_segment",
                    [True],
                    "chunk belongs to the result's video and segment",
                    "result mixes up segments: stale or merged output",
                ),
                _in_set(
                    "times_finite",
                    [True],
                    "chunk start and end are finite",
                    "NaN/inf timestamps: broken model output or arithmetic",
                ),
                _between(
                    "start_s",
                    "chunk starts inside its clip [clip start, clip end] (within the tolerance)",
                    "misplaced chunk: clip offset missing or applied twice",
                    min_value=_param("clip_start_min_s"),
                    max_value=_param("clip_end_max_s"),
                ),
                Check(
                    "ExpectColumnPairValuesAToBeGreaterThanB",
                    "chunk end >= chunk start",
                    {"column_A": "end_s", "column_B": "start_s", "or_equal": True},
                    "inverted chunk: broken timestamps",
                ),
                _between(
                    "end_s",
                    "chunk ends inside its clip: end <= clip end (within the tolerance)",
                    "chunk past the audio: a bad timestamp or a clip offset error",
                    max_value=_param("clip_end_max_s"),
                ),
                _between(
                    "midpoint_s",
                    "chunk midpoint inside the segment it belongs to [segment start, segment end] (within the tolerance)",
                    "chunk kept by the wrong segment: overlap not deduplicated, or misplaced",
                    min_value=_param("segment_start_min_s"),
                    max_value=_param("segment_end_max_s"),
                ),
                _in_set(
                    "start_after_previous",
                    [True],
                    "chunk start times non-decreasing",
                    "chunks out of order: a broken merge",
                ),
                Check(
                    "ExpectColumnValuesToBeUnique",
                    "no duplicate chunk ids",
                    {"column": "chunk_id"},
                    "duplicate ids: one chunk would overwrite another in the stores",
                ),
                Check(
                    "ExpectColumnValueLengthsToBeBetween",
                    "chunk text not empty",
                    {"column": "text", "min_value": 1},
                    "chunk without words: nothing to index",
                ),
                _between(
                    "repeat_count",
                    "no repeated-token loop: no 1-4 word n-gram repeated more than max_repeats times in a row",
                    "Whisper decoding loop (the same word or phrase until the window ends)",
                    max_value=_param("max_repeats"),
                ),
                _between(
                    "compression_ratio",
                    "text compression ratio within max_compression_ratio",
                    "Whisper decoding loop of a longer phrase",
                    max_value=_param("max_compression_ratio"),
                ),
                _in_set(
                    "avg_logprob_finite",
                    [True],
                    "avg_logprob finite where recorded",
                    "NaN/inf model output",
                ),
                _between(
                    "avg_logprob",
                    "avg_logprob <= 0 where recorded (a log-probability)",
                    "wrong field or broken model output",
                    max_value=0,
                ),
                Check(
                    "ExpectColumnValuesToMatchRegex",
                    "chunk language, where given, a 2-3 letter lowercase code",
                    {"column": "language", "regex": r"^[a-z]{2,3}$"},
                    "language name or label instead of its code: wrong field or model output",
                ),
                Check(
                    "ExpectColumnValuesToMatchRegex",
                    "result language, where given, a 2-3 letter lowercase code",
                    {"column": "result_language", "regex": r"^[a-z]{2,3}$"},
                    "language name or label instead of its code: wrong field or model output",
                ),
            ),
        ),
        SuiteSpec(
            "index",
            None,  # the unexpected values are the object ids themselves
            (
                Check(
                    "ExpectColumnSumToBeBetween",
                    "equal object counts in both stores (Postgres minus Weaviate)",
                    {"column": "pg_minus_wv", "min_value": 0, "max_value": 0},
                    "stores disagree",
                ),
                Check(
                    "ExpectColumnValuesToBeNull",
                    "no object only in Postgres",
                    {"column": "only_in_postgres"},
                    "stores disagree: a Weaviate write was lost",
                ),
                Check(
                    "ExpectColumnValuesToBeNull",
                    "no object only in Weaviate",
                    {"column": "only_in_weaviate"},
                    "stores disagree: a Postgres write was lost",
                ),
            ),
        ),
    )
}
