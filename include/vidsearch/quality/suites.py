"""The expectation suites, one per stage, as data.

Thresholds are GX suite parameters (`$PARAMETER`) filled per call, so one suite object per stage
serves every run and configuration.
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
    """One expectation of a suite: the GX class name, its kwargs and a short human description."""

    expectation: str
    description: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SuiteSpec:
    stage: str
    row_id: str | None  # column naming each row; GX reports it for unexpected rows
    checks: tuple[Check, ...]


def _between(column: str, description: str, **kwargs: Any) -> Check:
    return Check("ExpectColumnValuesToBeBetween", description, {"column": column, **kwargs})


def _in_set(column: str, value_set: Any, description: str) -> Check:
    return Check("ExpectColumnValuesToBeInSet", description, {"column": column, "value_set": value_set})


SUITES: dict[str, SuiteSpec] = {
    spec.stage: spec
    for spec in (
        SuiteSpec(
            "probe",
            None,  # one row: naming it adds nothing
            (
                Check("ExpectColumnValuesToNotBeNull", "duration is known", {"column": "duration_s"}),
                _between("duration_s", "duration > 0", min_value=0, strict_min=True),
                Check(
                    "ExpectColumnValueLengthsToBeBetween",
                    "a video stream exists (video codec named)",
                    {"column": "video_codec", "min_value": 1},
                ),
                Check("ExpectColumnValuesToNotBeNull", "frame rate is known", {"column": "frame_rate"}),
                _between(
                    "frame_rate",
                    "frame rate within [min_fps, max_fps]",
                    min_value=_param("min_fps"),
                    max_value=_param("max_fps"),
                ),
                _between(
                    "width", "width within [min_dim, max_dim]", min_value=_param("min_dim"), max_value=_param("max_dim")
                ),
                _between(
                    "height",
                    "height within [min_dim, max_dim]",
                    min_value=_param("min_dim"),
                    max_value=_param("max_dim"),
                ),
            ),
        ),
        SuiteSpec(
            "split",
            "segment",
            (
                Check("ExpectTableRowCountToBeBetween", "at least one segment", {"min_value": 1}),
                Check(
                    "ExpectColumnPairValuesToBeEqual",
                    "segments numbered 0..n-1 in order",
                    {"column_A": "index", "column_B": "position"},
                ),
                _between(
                    "gap_s",
                    "no gap or overlap with the previous segment beyond the tolerance (one keyframe interval)",
                    min_value=_param("neg_tolerance_s"),
                    max_value=_param("tolerance_s"),
                ),
                _between("length_s", "segment duration > 0", min_value=0, strict_min=True),
                Check(
                    "ExpectColumnMaxToBeBetween",
                    "segments reach the end of the covered range (duration or time limit)",
                    {"column": "end_s", "min_value": _param("end_min_s"), "max_value": _param("end_max_s")},
                ),
                _between("packet_count", "segment file has video packets", min_value=1),
                _in_set("decodable", [True], "first frame of the segment file decodes"),
                _between(
                    "start_offset_s",
                    "segment file starts at the segment start (within the tolerance)",
                    min_value=_param("neg_tolerance_s"),
                    max_value=_param("tolerance_s"),
                ),
                _between(
                    "end_shortfall_s",
                    "segment file reaches the segment end (within the tolerance)",
                    max_value=_param("tolerance_s"),
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
                ),
                Check(
                    "ExpectColumnValuesToBeIncreasing",
                    "frame timestamps strictly increasing",
                    {"column": "pts_s", "strictly": True},
                ),
                _between(
                    "pts_s",
                    "frame timestamps inside [segment start, segment end)",
                    min_value=_param("start_s"),
                    max_value=_param("end_s"),
                    strict_max=True,
                ),
                _in_set("decoded", [True], "every frame decodes"),
                Check(
                    "ExpectColumnUniqueValueCountToBeBetween",
                    "one consistent frame size",
                    {"column": "size", "min_value": 0, "max_value": 1},
                ),
                _in_set("size", _param("bundle_size"), "frame size equals the bundle's"),
                _between(
                    "pixel_std",
                    "no blank frames (pixel std > blank_std_min)",
                    min_value=_param("blank_std_min"),
                    strict_min=True,
                ),
            ),
        ),
        SuiteSpec(
            "detections",
            "object",
            (
                _in_set("finite", [True], "box coordinates and score are finite"),
                _between("x0", "box inside the frame: x0 >= 0", min_value=0),
                _between("y0", "box inside the frame: y0 >= 0", min_value=0),
                _between("x1", "box inside the frame: x1 <= width", max_value=_param("width")),
                _between("y1", "box inside the frame: y1 <= height", max_value=_param("height")),
                Check(
                    "ExpectColumnPairValuesAToBeGreaterThanB",
                    "box x0 < x1",
                    {"column_A": "x1", "column_B": "x0", "or_equal": False},
                ),
                Check(
                    "ExpectColumnPairValuesAToBeGreaterThanB",
                    "box y0 < y1",
                    {"column_A": "y1", "column_B": "y0", "or_equal": False},
                ),
                _between("area", "box area > 0", min_value=0, strict_min=True),
                _between("score", "score in [0, 1]", min_value=0, max_value=1),
                _between("score", "score >= the run's score_threshold", min_value=_param("score_threshold")),
                _in_set("label", _param("labels"), "label from the detector's label set"),
                _in_set("frame_index", _param("frame_indexes"), "detection's frame is in the bundle"),
            ),
        ),
        SuiteSpec(
            "embeddings",
            "row",
            (
                _in_set("has_vector", [True], "an embedding row for every object"),
                Check("ExpectColumnValuesToNotBeNull", "an object for every embedding row", {"column": "object_id"}),
                _in_set("dim", _param("expected_dim"), "vector dimension equals the collection's"),
                _in_set("declared_dim", _param("expected_dim"), "result.embedding_dim equals the collection's"),
                _between("nonfinite_values", "all values finite", max_value=0),
                _between(
                    "norm",
                    "unit L2 norm (within unit_norm_tol)",
                    min_value=_param("norm_min"),
                    max_value=_param("norm_max"),
                ),
                Check("ExpectColumnValuesToBeUnique", "no duplicate object ids", {"column": "object_id"}),
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
                ),
                Check("ExpectColumnValuesToBeNull", "no object only in Postgres", {"column": "only_in_postgres"}),
                Check("ExpectColumnValuesToBeNull", "no object only in Weaviate", {"column": "only_in_weaviate"}),
            ),
        ),
    )
}
