"""Data-quality gates between pipeline stages, run with Great Expectations (GX 1.x).

Every gate follows the same pattern: turn a stage's typed output (records, small measured facts; never
raw pixels) into one small pandas DataFrame, validate it against that stage's expectation suite and
return a `GateResult`. `enforce()` turns a failed result into `QualityGateError` (a `PermanentError`:
the pipeline quarantines the segment instead of retrying), `write_report()` stores it as JSON and
Markdown next to the data.

All suites live in `_SUITES` below, as data: one suite per stage, every expectation with a short human
description. Thresholds are NOT baked into the suites: they are GX suite parameters (`$PARAMETER`)
filled per call from `QualityConfig` and the run's facts (segment bounds, frame size, label set, ...),
so one suite object per stage serves every run and configuration.

| stage      | subject  | one row per            | checks                                                   |
|------------|----------|------------------------|----------------------------------------------------------|
| probe      | video    | video (one row)        | duration > 0, a video codec, fps and size within limits  |
| split      | video    | segment                | contiguous cover of [0, end], files non-empty, decodable |
| frames     | segNNNN  | sampled frame          | count, timestamps, one size, not blank, decodable        |
| detections | segNNNN  | detected object        | box inside the frame, score, label                       |
| embeddings | segNNNN  | embedding row          | dimension, finite, unit norm, unique ids                 |
| index      | segNNNN  | object id (union)      | Postgres and Weaviate hold the same objects              |

GX notes (1.24): GX is imported lazily (it takes seconds; DAG parsing must not pay for it) and one
ephemeral context per process is built on first use and cached. Column-map expectations (`..._values_
to_be_between` etc.) treat NaN as *missing* and skip it, so finiteness is checked explicitly where
NaN can occur. A zero-row DataFrame validates fine with the pandas datasource: row-wise expectations
pass with `element_count` 0 (column aggregates such as a column max observe None and fail, so none is
used where zero rows are legitimate). Results come back in GX's order, not the suite's; they are
re-sorted by the `order` kept in each expectation's meta.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import ffmpeg as ff
from . import storage
from .errors import PermanentError, QualityGateError
from .records import DetectEmbedResult, FrameBundle, Segment, VideoManifest

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

log = logging.getLogger(__name__)

ENV_VAR = "VIDSEARCH_QUALITY"
STAGES: tuple[str, ...] = ("probe", "split", "frames", "detections", "embeddings", "index")
SEGMENT_FACTS_TIMEOUT_S = 120.0
# frame_stats looks at no more than about this many pixels per frame (a strided sample beyond it).
_STATS_MAX_PIXELS = 65_536
# In the one-line summary: how many unexpected values / row ids to show per expectation.
_SUMMARY_VALUES = 5


# ---------------------------------------------------------------------------------------------------
# Configuration and results
# ---------------------------------------------------------------------------------------------------


class QualityConfigError(PermanentError, ValueError):
    """The quality configuration (e.g. `VIDSEARCH_QUALITY`) is invalid."""


class QualityConfig(BaseModel):
    """Every threshold of every gate. Override any of them with `VIDSEARCH_QUALITY` (JSON object)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # probe
    min_fps: float = Field(1.0, gt=0, description="Lowest acceptable average frame rate.")
    max_fps: float = Field(240.0, gt=0, description="Highest acceptable average frame rate.")
    min_dim: int = Field(16, ge=1, description="Smallest acceptable display width/height (px).")
    max_dim: int = Field(8192, ge=1, description="Largest acceptable display width/height (px).")
    # split
    split_tolerance_s: Optional[float] = Field(
        None,
        ge=0,
        description="Allowed gap/overlap between segments and between a segment and its file's "
        "timestamps. None: the largest keyframe interval measured in the segment files.",
    )
    split_min_tolerance_s: float = Field(
        0.002, ge=0, description="Floor of the split tolerance (Matroska stores 1 ms timestamps)."
    )
    # frames
    frame_count_abs_tol: float = Field(1.0, ge=0, description="Allowed frame-count error, in frames.")
    frame_count_rel_tol: float = Field(
        0.10, ge=0, description="Allowed frame-count error, relative; the larger of the two applies."
    )
    blank_std_min: float = Field(
        2.0, ge=0, description="A frame whose pixel standard deviation is not above this is blank."
    )
    # embeddings
    unit_norm_tol: float = Field(1e-3, gt=0, description="Allowed |L2 norm - 1| of an embedding.")
    # reporting
    partial_unexpected_count: int = Field(
        20, ge=1, le=1000, description="How many unexpected values GX lists per expectation."
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "QualityConfig":
        """Defaults, overridden by the JSON object in `VIDSEARCH_QUALITY` (unknown keys are an error)."""
        env = os.environ if environ is None else environ
        raw = (env.get(ENV_VAR) or "").strip()
        if not raw:
            return cls()
        try:
            overrides = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise QualityConfigError(f"{ENV_VAR} is not valid JSON: {exc.msg}") from None
        if not isinstance(overrides, dict):
            raise QualityConfigError(f"{ENV_VAR} must be a JSON object, got {type(overrides).__name__}")
        try:
            return cls.model_validate(overrides)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
            )
            raise QualityConfigError(f"invalid {ENV_VAR}: {problems}") from None


class FailedExpectation(BaseModel):
    """One expectation that did not hold."""

    model_config = ConfigDict(extra="forbid")

    expectation: str = Field(description="GX expectation type, e.g. expect_column_values_to_be_between.")
    column: Optional[str] = Field(None, description="Column checked (A,B for pair expectations).")
    observed: Any = Field(
        None,
        description="observed_value, or {unexpected_count, partial_unexpected_list, rows} for row-wise "
        "expectations, or {error} when the expectation raised.",
    )
    expected: Optional[str] = Field(None, description="What was required, e.g. '> 2' or 'in [0, 1]'.")
    description: str = Field("", description="Short human text, e.g. 'frame timestamps strictly increasing'.")


class GateResult(BaseModel):
    """The outcome of one gate on one subject."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    subject: str = Field(description="'video' or a segment name such as 'seg0003'.")
    success: bool
    evaluated: int = Field(description="Number of expectations evaluated.")
    failed: list[FailedExpectation] = Field(default_factory=list)
    gx_result: dict[str, Any] = Field(default_factory=dict, description="GX validation result (JSON dict).")

    def summary(self) -> str:
        """One line for logs and error messages."""
        if self.success:
            return f"{self.stage} gate passed for {self.subject}: {self.evaluated} expectations"
        row_id = (_SUITES[self.stage].row_id if self.stage in _SUITES else None) or "row"
        parts = [_describe_failure(f, row_id) for f in self.failed] or ["validation failed"]
        return f"{self.stage} gate failed for {self.subject}: " + "; ".join(parts)


class SegmentFacts(BaseModel):
    """What one segment file holds, measured with ffprobe/ffmpeg (`segment_facts`).

    Timestamps are in the file's own timeline (the source container's: the split stage keeps them),
    so `pts - manifest.start_time_s` is the time relative to the video start.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    packet_count: int = Field(ge=0, description="Video packets in the file.")
    keyframe_count: int = Field(0, ge=0)
    first_pts_s: Optional[float] = Field(None, description="Smallest video packet PTS.")
    last_pts_s: Optional[float] = Field(None, description="Largest video packet PTS.")
    frame_interval_s: Optional[float] = Field(None, description="Median interval between frames.")
    max_keyframe_interval_s: Optional[float] = Field(
        None,
        description="Largest distance between consecutive keyframes, counting the last keyframe's "
        "run up to the end of the file (so a one-keyframe file reports its own length).",
    )
    decodable: bool = Field(description="The first video frame decodes.")
    error: Optional[str] = Field(None, description="Why the file could not be read or decoded.")


# ---------------------------------------------------------------------------------------------------
# The suites: one per stage, as data
# ---------------------------------------------------------------------------------------------------


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
    row_id: Optional[str]  # column naming each row; GX reports it for unexpected rows
    checks: tuple[Check, ...]


def _between(column: str, description: str, **kwargs: Any) -> Check:
    return Check("ExpectColumnValuesToBeBetween", description, {"column": column, **kwargs})


def _in_set(column: str, value_set: Any, description: str) -> Check:
    return Check("ExpectColumnValuesToBeInSet", description, {"column": column, "value_set": value_set})


_SUITES: dict[str, SuiteSpec] = {
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


# ---------------------------------------------------------------------------------------------------
# GX plumbing: one ephemeral context per process, one datasource, one asset + suite per stage
# ---------------------------------------------------------------------------------------------------

_LOCK = threading.RLock()
_STATE: dict[str, Any] = {}
# Seconds each process spent importing GX and building its context and suites (a forked child that
# inherited them spent none).
_SETUP_SECONDS: dict[int, float] = {}


def _context() -> dict[str, Any]:
    """The process's GX objects, built on first use.

    A forked child inherits them (the ephemeral context holds only in-memory stores: no threads, files
    or connections), which is what `warm_up` in a preloading parent is for.
    """
    with _LOCK:
        if "context" not in _STATE:
            started = time.perf_counter()
            import great_expectations as gx
            from great_expectations.data_context.types.base import (
                DataContextConfig,
                InMemoryStoreBackendDefaults,
                ProgressBarsConfig,
            )

            context = gx.get_context(
                mode="ephemeral",
                project_config=DataContextConfig(
                    store_backend_defaults=InMemoryStoreBackendDefaults(),
                    analytics_enabled=False,
                    progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
                ),
            )
            datasource = context.data_sources.add_pandas("vidsearch")
            _STATE.update(gx=gx, context=context, datasource=datasource, stages={})
            _SETUP_SECONDS[os.getpid()] = _SETUP_SECONDS.get(os.getpid(), 0.0) + time.perf_counter() - started
            log.debug("GX %s context ready in %.2f s", gx.__version__, time.perf_counter() - started)
        return _STATE


def warm_up() -> None:
    """Import GX and build the context and every stage's suite now (a preloading parent process)."""
    for stage in _SUITES:
        _stage(stage)


def setup_seconds() -> float:
    """Seconds this process (not a parent it was forked from) spent importing GX and building suites."""
    return _SETUP_SECONDS.get(os.getpid(), 0.0)


def _stage(stage: str) -> tuple[Any, Any]:
    """(batch definition, expectation suite) of `stage`, built once per process."""
    state = _context()
    with _LOCK:
        if stage not in state["stages"]:
            started = time.perf_counter()
            spec = _SUITES[stage]
            gx = state["gx"]
            descriptions = [c.description for c in spec.checks]
            if len(set(descriptions)) != len(descriptions):
                raise RuntimeError(f"suite {stage}: expectation descriptions must be unique")
            suite = gx.ExpectationSuite(name=f"vidsearch.{stage}")
            for order, check in enumerate(spec.checks):
                cls = getattr(gx.expectations, check.expectation)
                suite.add_expectation(cls(**check.kwargs, description=check.description, meta={"order": order}))
            suite = state["context"].suites.add(suite)
            asset = state["datasource"].add_dataframe_asset(name=stage)
            batch_definition = asset.add_batch_definition_whole_dataframe("whole")
            state["stages"][stage] = (batch_definition, suite)
            _SETUP_SECONDS[os.getpid()] = _SETUP_SECONDS.get(os.getpid(), 0.0) + time.perf_counter() - started
        return state["stages"][stage]


def expectation_suite(stage: str) -> Any:
    """The GX `ExpectationSuite` of `stage` (for docs and inspection; imports GX)."""
    if stage not in _SUITES:
        raise ValueError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
    return _stage(stage)[1]


def _validate(stage: str, subject: str, df: "pd.DataFrame", params: dict[str, Any], cfg: QualityConfig) -> GateResult:
    spec = _SUITES[stage]
    started = time.perf_counter()
    batch_definition, suite = _stage(stage)
    result_format: dict[str, Any] = {
        "result_format": "SUMMARY",
        "partial_unexpected_count": cfg.partial_unexpected_count,
    }
    if spec.row_id:
        result_format["unexpected_index_column_names"] = [spec.row_id]
    with _LOCK:  # GX objects are shared by the process; validations are short
        batch = batch_definition.get_batch(batch_parameters={"dataframe": df})
        validation = batch.validate(suite, expectation_parameters=params, result_format=result_format)
    gx_result = _jsonable(validation.to_json_dict())
    gx_result["results"] = sorted(gx_result.get("results") or [], key=_order)
    failed = [_failure(r, spec.row_id) for r in gx_result["results"] if not r.get("success")]
    statistics_ = gx_result.get("statistics") or {}
    gate = GateResult(
        stage=stage,
        subject=subject,
        success=bool(gx_result.get("success")) and not failed,
        evaluated=int(statistics_.get("evaluated_expectations") or len(gx_result["results"])),
        failed=failed,
        gx_result=gx_result,
    )
    log.debug("%s gate on %s: %d rows, %.1f ms", stage, subject, len(df), 1000 * (time.perf_counter() - started))
    return gate


def _frame(columns: dict[str, tuple[str, Sequence[Any]]]) -> "pd.DataFrame":
    """A DataFrame from {name: (dtype, values)}; dtypes hold even with zero rows."""
    import pandas as pd

    return pd.DataFrame({name: pd.Series(list(values), dtype=dtype) for name, (dtype, values) in columns.items()})


# ---------------------------------------------------------------------------------------------------
# Result helpers
# ---------------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Strict-JSON-safe copy: numpy scalars to Python, tuples/sets to lists, NaN/inf to strings."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return [_jsonable(v) for v in sorted(value, key=str)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    return str(value)


def _order(result: dict[str, Any]) -> int:
    meta = (result.get("expectation_config") or {}).get("meta") or {}
    order = meta.get("order")
    return order if isinstance(order, int) else 1_000_000


def _exception_message(info: Any) -> Optional[str]:
    """GX reports a raised expectation either flat or keyed by metric id."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "expectation raised")
    for nested in info.values():
        message = _exception_message(nested) if isinstance(nested, dict) else None
        if message:
            return message
    return None


def _column(kwargs: dict[str, Any]) -> Optional[str]:
    if kwargs.get("column") is not None:
        return str(kwargs["column"])
    if kwargs.get("column_A") is not None:
        return f"{kwargs['column_A']},{kwargs.get('column_B')}"
    return None


def _observed(result: dict[str, Any], row_id: Optional[str]) -> Any:
    message = _exception_message(result.get("exception_info"))
    if message:
        return {"error": message}
    res = result.get("result") or {}
    if "observed_value" in res:
        return res["observed_value"]
    if "unexpected_count" in res:
        observed: dict[str, Any] = {
            "unexpected_count": res.get("unexpected_count"),
            "partial_unexpected_list": res.get("partial_unexpected_list") or [],
        }
        index_list = (res.get("partial_unexpected_index_list") or []) if row_id else []
        rows = [r.get(row_id) for r in index_list if isinstance(r, dict)]
        if rows:
            observed["rows"] = rows
        return observed
    return None


def _bound(value: Any) -> str:
    return _short(value, compact=True) if value is not None else ""


def _expected(kwargs: dict[str, Any], expectation: str) -> Optional[str]:
    """Human form of what the expectation required, from its resolved kwargs."""
    if "value_set" in kwargs:
        return f"in {_bound(kwargs['value_set'])}"
    if "strictly" in kwargs and "increasing" in expectation:
        return "strictly increasing" if kwargs.get("strictly") else "increasing"
    if expectation.endswith("to_be_null"):
        return "null"
    if expectation.endswith("to_not_be_null"):
        return "not null"
    if expectation.endswith("to_be_unique"):
        return "unique"
    if "column_A" in kwargs:
        op = ">=" if kwargs.get("or_equal") else ">"
        if "greater_than" in expectation:
            return f"{kwargs['column_A']} {op} {kwargs.get('column_B')}"
        return f"{kwargs['column_A']} == {kwargs.get('column_B')}"
    if "value" in kwargs:
        return f"== {_bound(kwargs['value'])}"
    lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
    if lo is None and hi is None:
        return None
    if lo is not None and hi is not None and lo == hi and not (kwargs.get("strict_min") or kwargs.get("strict_max")):
        return f"== {_bound(lo)}"
    if hi is None:
        return f"{'>' if kwargs.get('strict_min') else '>='} {_bound(lo)}"
    if lo is None:
        return f"{'<' if kwargs.get('strict_max') else '<='} {_bound(hi)}"
    left = "(" if kwargs.get("strict_min") else "["
    right = ")" if kwargs.get("strict_max") else "]"
    return f"in {left}{_bound(lo)}, {_bound(hi)}{right}"


def _failure(result: dict[str, Any], row_id: Optional[str]) -> FailedExpectation:
    config = result.get("expectation_config") or {}
    kwargs = config.get("kwargs") or {}
    expectation = str(config.get("type") or "unknown_expectation")
    return FailedExpectation(
        expectation=expectation,
        column=_column(kwargs),
        observed=_observed(result, row_id),
        expected=_expected(kwargs, expectation),
        description=str(config.get("description") or ""),
    )


def _short(value: Any, limit: int = _SUMMARY_VALUES, *, compact: bool = False) -> str:
    """Short text of a value; floats keep a ".0" (as observed) unless `compact` (bounds GX made float)."""
    if isinstance(value, (list, tuple)):
        items = [repr(_short(v)) if isinstance(v, str) else _short(v, compact=compact) for v in list(value)[:limit]]
        more = f", ... {len(value) - limit} more" if len(value) > limit else ""
        return "[" + ", ".join(items) + more + "]"
    if isinstance(value, float):
        text = f"{value:.6g}"
        return text + ".0" if not compact and text.lstrip("-").isdigit() else text
    if isinstance(value, str):
        return value if len(value) <= 60 else value[:57] + "..."
    return str(value)


def _format_observed(observed: Any, row_id: str = "row") -> str:
    if isinstance(observed, dict) and "error" in observed:
        return f"error: {_short(str(observed['error']))}"
    if isinstance(observed, dict) and "unexpected_count" in observed:
        if not observed["unexpected_count"]:
            return "0 unexpected"
        text = f"{observed['unexpected_count']} unexpected {_short(observed.get('partial_unexpected_list') or [])}"
        if observed.get("rows"):
            text += f" at {row_id} {_short(observed['rows'])}"
        return text
    return _short(observed)


def _describe_failure(f: FailedExpectation, row_id: str = "row") -> str:
    head = f"{f.expectation}({f.column})" if f.column else f.expectation
    tail = ": ".join(part for part in (f"expected {f.expected}" if f.expected else "", f.description) if part)
    return f"{head} observed {_format_observed(f.observed, row_id)}" + (f" ({tail})" if tail else "")


# ---------------------------------------------------------------------------------------------------
# Gates
# ---------------------------------------------------------------------------------------------------


def _cfg(cfg: QualityConfig | None) -> QualityConfig:
    return cfg if cfg is not None else QualityConfig.from_env()


def check_probe(manifest: VideoManifest, cfg: QualityConfig | None = None) -> GateResult:
    """Duration > 0, a video stream, frame rate in [min_fps, max_fps], size in [min_dim, max_dim]."""
    cfg = _cfg(cfg)
    df = _frame(
        {
            "video_id": ("object", [manifest.video_id]),
            "duration_s": ("float64", [manifest.duration_s]),
            "video_codec": ("object", [manifest.video_codec or ""]),
            "frame_rate": ("float64", [manifest.frame_rate]),
            "width": ("int64", [manifest.width]),
            "height": ("int64", [manifest.height]),
        }
    )
    params = {"min_fps": cfg.min_fps, "max_fps": cfg.max_fps, "min_dim": cfg.min_dim, "max_dim": cfg.max_dim}
    return _validate("probe", "video", df, params, cfg)


def split_tolerance(facts: Sequence[SegmentFacts], cfg: QualityConfig | None = None) -> float:
    """The split gate's tolerance: configured, or the largest keyframe interval measured; >= the floor."""
    cfg = _cfg(cfg)
    if cfg.split_tolerance_s is not None:
        tolerance = cfg.split_tolerance_s
    else:
        measured = [f.max_keyframe_interval_s for f in facts if f.max_keyframe_interval_s is not None]
        tolerance = max(measured, default=0.0)
    return max(float(tolerance), cfg.split_min_tolerance_s)


def check_split(
    manifest: VideoManifest,
    segments: Sequence[Segment],
    facts: Sequence[SegmentFacts],
    time_limit_s: float | None,
    cfg: QualityConfig | None = None,
) -> GateResult:
    """Segments cover [0, min(duration, time limit)] without gaps/overlaps beyond one keyframe interval,
    every segment file holds video packets, its first frame decodes and its timestamps match the
    segment's range. `facts[i]` describes the file of `segments[i]` (see `segment_facts`)."""
    cfg = _cfg(cfg)
    if len(facts) != len(segments):
        raise ValueError(f"{len(facts)} segment facts for {len(segments)} segments")
    tolerance = split_tolerance(facts, cfg)
    covered = manifest.duration_s if not time_limit_s else min(manifest.duration_s, time_limit_s)
    origin = manifest.start_time_s
    prev_end = [0.0] + [s.end_s for s in segments[:-1]]

    def rel(value: Optional[float]) -> float:
        return float("nan") if value is None else value - origin

    df = _frame(
        {
            "segment": ("object", [s.name for s in segments]),
            "index": ("int64", [s.index for s in segments]),
            "position": ("int64", list(range(len(segments)))),
            "start_s": ("float64", [s.start_s for s in segments]),
            "end_s": ("float64", [s.end_s for s in segments]),
            "gap_s": ("float64", [s.start_s - p for s, p in zip(segments, prev_end)]),
            "length_s": ("float64", [s.end_s - s.start_s for s in segments]),
            "packet_count": ("int64", [f.packet_count for f in facts]),
            "decodable": ("bool", [bool(f.decodable) for f in facts]),
            "start_offset_s": ("float64", [rel(f.first_pts_s) - s.start_s for s, f in zip(segments, facts)]),
            "end_shortfall_s": ("float64", [s.end_s - rel(f.last_pts_s) for s, f in zip(segments, facts)]),
        }
    )
    params = {
        "tolerance_s": tolerance,
        "neg_tolerance_s": -tolerance,
        "end_min_s": covered - tolerance,
        "end_max_s": covered + tolerance,
    }
    return _validate("split", "video", df, params, cfg)


def expected_frame_count(
    segment: Segment,
    sample_fps: float,
    time_limit_s: float | None,
    cfg: QualityConfig | None = None,
    *,
    source_fps: float | None = None,
) -> tuple[int, int]:
    """(min, max) acceptable number of sampled frames for `segment` (see `check_frames`)."""
    cfg = _cfg(cfg)
    end = segment.end_s if not time_limit_s else min(segment.end_s, time_limit_s)
    rate = sample_fps if not source_fps else min(sample_fps, source_fps)
    expected = max(0.0, end - segment.start_s) * rate
    slack = max(cfg.frame_count_abs_tol, cfg.frame_count_rel_tol * expected)
    return max(0, math.ceil(expected - slack - 1e-9)), math.floor(expected + slack + 1e-9)


def frame_stats(frames: Iterable[Optional[np.ndarray]]) -> list[dict[str, Any]]:
    """Per frame: mean and std of the pixel values, height, width, and whether it decoded at all.

    `std` is the largest per-channel standard deviation, so a frame of one flat colour scores ~0
    whatever the colour. Frames above 65,536 pixels are measured on a regular strided sample (every
    2nd pixel of every 2nd row at 640x360, every 6th at 1080p), so a frame costs about a millisecond
    whatever its size. A missing/empty array counts as undecodable (mean/std None, size 0x0).
    """
    stats: list[dict[str, Any]] = []
    for frame in frames:
        if frame is None or not hasattr(frame, "shape") or getattr(frame, "ndim", 0) < 2 or frame.size == 0:
            stats.append({"mean": None, "std": None, "h": 0, "w": 0, "decoded": False})
            continue
        h, w = int(frame.shape[0]), int(frame.shape[1])
        step = max(1, math.ceil(math.sqrt(h * w / _STATS_MAX_PIXELS)))
        sample = np.asarray(frame[::step, ::step])
        channels = sample.reshape(-1, sample.shape[2] if sample.ndim == 3 else 1)
        mean = channels.mean(axis=0, dtype=np.float64)
        values = channels.astype(np.float32, copy=False)
        # E[x^2] - E[x]^2 in float64: one pass, no (N, C) float64 temporary; exact enough for pixels.
        var = np.einsum("ij,ij->j", values, values, dtype=np.float64) / max(1, channels.shape[0]) - mean * mean
        stats.append(
            {
                "mean": round(float(mean.mean()), 4),
                "std": round(float(np.sqrt(np.maximum(var, 0.0)).max()), 4),
                "h": h,
                "w": w,
                "decoded": True,
            }
        )
    return stats


def check_frames(
    segment: Segment,
    bundle: FrameBundle,
    stats: Sequence[Mapping[str, Any]],
    sample_fps: float,
    time_limit_s: float | None,
    cfg: QualityConfig | None = None,
    *,
    source_fps: float | None = None,
) -> GateResult:
    """Frame count ~ (segment duration clipped to the time limit) x sample_fps (within the larger of
    frame_count_abs_tol frames and frame_count_rel_tol), timestamps strictly increasing inside
    [start, end), one frame size equal to the bundle's, no blank or undecodable frame.

    `stats[i]` describes `bundle.frames[i]` (`frame_stats` of its pixels: as extracted,
    `frames.extract_frames(stats=...)`, or of `read_bundle`'s arrays). `source_fps` (the video's frame
    rate), when given, caps the expected rate: a 5 fps video sampled at 10 fps yields 5 frames a second.
    A keyframe bundle (`bundle.sampling == "keyframes"`) has no grid: its count must be at least 1 (a
    segment starts on a keyframe) and at most the range's frame count at `source_fps` (no upper
    bound without it).
    """
    cfg = _cfg(cfg)
    if len(stats) != len(bundle.frames):
        raise ValueError(f"{len(stats)} frame stats for {len(bundle.frames)} frames in the bundle")
    count_min, count_max = expected_frame_count(segment, sample_fps, time_limit_s, cfg, source_fps=source_fps)
    end = segment.end_s if not time_limit_s else min(segment.end_s, time_limit_s)
    end = max(end, segment.start_s)  # a limit before the segment: an empty range (GX rejects min > max)
    if bundle.sampling == "keyframes":
        count_min = 1 if end > segment.start_s else 0
        count_max = (
            expected_frame_count(segment, source_fps, time_limit_s, cfg, source_fps=source_fps)[1]
            if source_fps
            else 2**31 - 1
        )
        count_max = max(count_max, count_min)

    def num(value: Any) -> float:
        return float("nan") if value is None else float(value)

    df = _frame(
        {
            "frame": ("int64", [f.index for f in bundle.frames]),
            "pts_s": ("float64", [f.pts_s for f in bundle.frames]),
            "decoded": ("bool", [bool(s.get("decoded", True)) for s in stats]),
            "size": ("object", [f"{int(s.get('w') or 0)}x{int(s.get('h') or 0)}" for s in stats]),
            "pixel_mean": ("float64", [num(s.get("mean")) for s in stats]),
            "pixel_std": ("float64", [num(s.get("std")) for s in stats]),
        }
    )
    params = {
        "count_min": count_min,
        "count_max": count_max,
        "start_s": segment.start_s,
        "end_s": end,
        "bundle_size": [f"{bundle.width}x{bundle.height}"],
        "blank_std_min": cfg.blank_std_min,
    }
    return _validate("frames", segment.name, df, params, cfg)


def check_detections(
    result: DetectEmbedResult,
    bundle: FrameBundle,
    score_threshold: float,
    labels: set[str],
    cfg: QualityConfig | None = None,
) -> GateResult:
    """Boxes inside the frame (0 <= x0 < x1 <= width, same for y) with positive area, scores in [0, 1]
    and >= score_threshold, labels from `labels`, frames from the bundle. Zero detections pass."""
    cfg = _cfg(cfg)
    objects = result.objects
    boxes = [o.box for o in objects]
    df = _frame(
        {
            "object": ("object", [o.object_id for o in objects]),
            "frame_index": ("int64", [o.frame_index for o in objects]),
            "x0": ("float64", [b.x0 for b in boxes]),
            "y0": ("float64", [b.y0 for b in boxes]),
            "x1": ("float64", [b.x1 for b in boxes]),
            "y1": ("float64", [b.y1 for b in boxes]),
            "area": ("float64", [b.area for b in boxes]),
            "score": ("float64", [o.score for o in objects]),
            "finite": (
                "bool",
                [all(math.isfinite(v) for v in (b.x0, b.y0, b.x1, b.y1, o.score)) for b, o in zip(boxes, objects)],
            ),
            "label": ("object", [o.label for o in objects]),
        }
    )
    params = {
        "width": float(bundle.width),
        "height": float(bundle.height),
        "score_threshold": float(score_threshold),
        "labels": sorted(labels),
        "frame_indexes": sorted({f.index for f in bundle.frames}),
    }
    return _validate("detections", f"seg{result.segment_index:04d}", df, params, cfg)


def check_embeddings(
    result: DetectEmbedResult,
    vectors: np.ndarray,
    expected_dim: int,
    cfg: QualityConfig | None = None,
) -> GateResult:
    """One row per object, dimension == expected_dim (the collection's), all values finite, unit L2
    norm within unit_norm_tol, no duplicate object ids. Zero objects (and a (0, D) matrix) pass."""
    cfg = _cfg(cfg)
    matrix = np.asarray(vectors)
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1) if matrix.size else matrix.reshape(0, 0)
    if matrix.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D matrix, got shape {matrix.shape}")
    n_vec, dim = int(matrix.shape[0]), int(matrix.shape[1])
    n_obj = len(result.objects)
    values = matrix.astype(np.float64, copy=False)
    finite = np.isfinite(values)
    nonfinite = (~finite).sum(axis=1) if n_vec else np.zeros(0, dtype=np.int64)
    with np.errstate(invalid="ignore", over="ignore"):
        norms = np.sqrt((np.where(finite, values, 0.0) ** 2).sum(axis=1)) if n_vec else np.zeros(0)
    norms = np.where(nonfinite > 0, np.nan, norms)
    rows = max(n_obj, n_vec)
    df = _frame(
        {
            "row": ("int64", list(range(rows))),
            "object_id": ("object", [o.object_id for o in result.objects] + [None] * (rows - n_obj)),
            "has_vector": ("bool", [i < n_vec for i in range(rows)]),
            "dim": ("float64", [float(dim) if i < n_vec else float("nan") for i in range(rows)]),
            "declared_dim": ("int64", [result.embedding_dim] * rows),
            "nonfinite_values": ("int64", [int(nonfinite[i]) if i < n_vec else 0 for i in range(rows)]),
            "norm": ("float64", [float(norms[i]) if i < n_vec else float("nan") for i in range(rows)]),
        }
    )
    params = {
        "expected_dim": [int(expected_dim)],
        "norm_min": 1.0 - cfg.unit_norm_tol,
        "norm_max": 1.0 + cfg.unit_norm_tol,
    }
    return _validate("embeddings", f"seg{result.segment_index:04d}", df, params, cfg)


def check_index(
    segment_name: str,
    postgres_ids: set[str],
    weaviate_ids: set[str],
    cfg: QualityConfig | None = None,
) -> GateResult:
    """The objects of one segment in Weaviate equal those in Postgres: equal counts and equal sets.

    Failures observe the count difference (Postgres minus Weaviate) and, for each store, how many ids
    are only there (and which)."""
    cfg = _cfg(cfg)
    pg, wv = {str(i) for i in postgres_ids}, {str(i) for i in weaviate_ids}
    ids = sorted(pg | wv)
    df = _frame(
        {
            "object_id": ("object", ids),
            "pg_minus_wv": ("int64", [int(i in pg) - int(i in wv) for i in ids]),
            "only_in_postgres": ("object", [i if i in pg and i not in wv else None for i in ids]),
            "only_in_weaviate": ("object", [i if i in wv and i not in pg else None for i in ids]),
        }
    )
    return _validate("index", segment_name, df, {}, cfg)


# ---------------------------------------------------------------------------------------------------
# Segment facts (ffprobe / ffmpeg)
# ---------------------------------------------------------------------------------------------------


def segment_facts(path: Path, *, timeout_s: float = SEGMENT_FACTS_TIMEOUT_S) -> SegmentFacts:
    """Measure one segment file: video packets (count, first/last PTS, keyframe spacing) by demuxing
    only (`ffprobe -show_packets`), and whether its first frame decodes (`ffmpeg -frames:v 1 -f null`).

    A file ffprobe/ffmpeg cannot read gives facts that fail the split gate (`error` says why), not an
    exception; a timeout (`FFmpegTimeoutError`, transient) or a missing ffmpeg still raises.
    """
    path = Path(path)
    source = ff.file_url(path)
    try:
        doc = ff.ffprobe_json(
            ["-select_streams", "V:0", "-show_entries", "packet=pts_time,flags", *ff.input_args(path)],
            timeout_s=timeout_s,
            strip_prefix=source,
        )
    except ff.FFmpegTimeoutError:
        raise
    except ff.FFmpegError as exc:
        return SegmentFacts(packet_count=0, decodable=False, error=str(exc))
    packets = doc.get("packets") or []
    pts = sorted(t for p in packets if (t := ff.parse_float(p.get("pts_time"))) is not None)
    keys = sorted(
        t for p in packets if "K" in str(p.get("flags", "")) and (t := ff.parse_float(p.get("pts_time"))) is not None
    )
    diffs = [b - a for a, b in zip(pts, pts[1:]) if b > a]
    frame_interval = statistics.median(diffs) if diffs else None
    max_key = None
    if keys:
        file_end = pts[-1] + (frame_interval or 0.0)
        intervals = [b - a for a, b in zip(keys, keys[1:])] + [file_end - keys[-1]]
        max_key = round(max(intervals), 6)
    decodable, error = False, None
    if not packets:
        error = "no video packets"
    else:
        decodable, error = _first_frame_decodes(path, timeout_s)
    return SegmentFacts(
        packet_count=len(packets),
        keyframe_count=len(keys),
        first_pts_s=pts[0] if pts else None,
        last_pts_s=pts[-1] if pts else None,
        frame_interval_s=round(frame_interval, 6) if frame_interval is not None else None,
        max_keyframe_interval_s=max_key,
        decodable=decodable,
        error=error,
    )


_PROGRESS_FRAME = re.compile(rb"^frame=\s*(\d+)\s*$", re.MULTILINE)


def _first_frame_decodes(path: Path, timeout_s: float) -> tuple[bool, Optional[str]]:
    try:
        run = ff.ffmpeg(
            [
                *ff.input_args(path),
                "-map",
                "0:V:0",
                "-frames:v",
                "1",
                "-progress",
                "pipe:1",
                "-nostats",
                "-f",
                "null",
                "-",
            ],
            timeout_s=timeout_s,
            strip_prefix=ff.file_url(path),
        )
    except ff.FFmpegTimeoutError:
        raise
    except ff.FFmpegError as exc:
        return False, str(exc)
    decoded = max((int(n) for n in _PROGRESS_FRAME.findall(run.stdout)), default=0)
    return (True, None) if decoded >= 1 else (False, "no frame decoded")


# ---------------------------------------------------------------------------------------------------
# Enforcing and reporting
# ---------------------------------------------------------------------------------------------------


def enforce(result: GateResult) -> GateResult:
    """`result` when it passed; otherwise raise `QualityGateError(result.summary())` (the result is on
    the exception as `gate_result`)."""
    if result.success:
        return result
    exc = QualityGateError(result.summary())
    exc.gate_result = result  # type: ignore[attr-defined]
    raise exc


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def _report_name(result: GateResult) -> str:
    return _UNSAFE_NAME.sub("_", f"{result.stage}-{result.subject}").strip("._") or "gate"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def report_markdown(result: GateResult) -> str:
    """The readable report: stage, subject, PASS/FAIL and every expectation with its outcome."""
    outcomes = result.gx_result.get("results") or []
    stats = result.gx_result.get("statistics") or {}
    passed = stats.get("successful_expectations", sum(1 for r in outcomes if r.get("success")))
    row_id = _SUITES[result.stage].row_id if result.stage in _SUITES else None
    lines = [
        f"# Quality gate: {result.stage} / {result.subject}",
        "",
        f"- **Stage:** {result.stage}",
        f"- **Subject:** {result.subject}",
        f"- **Result:** {'PASS' if result.success else 'FAIL'} ({passed} of {result.evaluated} expectations met)",
        f"- **Great Expectations:** {(result.gx_result.get('meta') or {}).get('great_expectations_version', '?')}",
        "",
        "| # | Result | Expectation | Column | Description | Expected | Observed |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, outcome in enumerate(outcomes, start=1):
        config = outcome.get("expectation_config") or {}
        kwargs = config.get("kwargs") or {}
        expectation = str(config.get("type") or "")
        lines.append(
            "| "
            + " | ".join(
                _cell(v)
                for v in (
                    n,
                    "PASS" if outcome.get("success") else "FAIL",
                    expectation,
                    _column(kwargs) or "",
                    config.get("description") or "",
                    _expected(kwargs, expectation) or "",
                    _format_observed(_observed(outcome, row_id), row_id or "row"),
                )
            )
            + " |"
        )
    if not result.success:
        lines += ["", "## Summary", "", result.summary()]
    return "\n".join(lines) + "\n"


def write_report(result: GateResult, uri_prefix: str) -> str:
    """Write `{prefix}/{stage}-{subject}.json` (the GateResult) and `.md` (readable); return the .md URI."""
    name = _report_name(result)
    storage.write_bytes(storage.join(uri_prefix, f"{name}.json"), result.model_dump_json(indent=1).encode())
    md_uri = storage.join(uri_prefix, f"{name}.md")
    storage.write_bytes(md_uri, report_markdown(result).encode())
    return md_uri


__all__ = [
    "ENV_VAR",
    "STAGES",
    "FailedExpectation",
    "GateResult",
    "QualityConfig",
    "QualityConfigError",
    "SegmentFacts",
    "check_detections",
    "check_embeddings",
    "check_frames",
    "check_index",
    "check_probe",
    "check_split",
    "enforce",
    "expectation_suite",
    "expected_frame_count",
    "frame_stats",
    "report_markdown",
    "segment_facts",
    "split_tolerance",
    "write_report",
]
