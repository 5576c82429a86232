"""Data-quality gates between pipeline stages, run with Great Expectations (GX 1.x).

Modules: `config` (which gates run, thresholds), `suites` (the expectations, as data), `gx` (the GX
context and validation), `checks` (one gate per stage, and the segment-file measurements), `text`
(the transcript gate's pure text measurements: repeated-token loops, compression ratio), `report`
(results, `enforce`, JSON and Markdown reports).

Every gate follows the same pattern: turn a stage's typed output (records, small measured facts; never
raw pixels) into one small pandas DataFrame, validate it against that stage's expectation suite and
return a `GateResult`. `enforce()` turns a failed result into `QualityGateError` (a `PermanentError`:
the pipeline quarantines the segment instead of retrying), `write_report()` stores it as JSON and
Markdown next to the data.

All suites live in `suites.SUITES`, as data: one suite per stage, every expectation with a short human
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
| transcript | segNNNN  | transcript chunk       | times in clip and segment, in order, text without loops  |

GX notes (1.24): GX is imported lazily (it takes seconds; DAG parsing must not pay for it) and one
ephemeral context per process is built on first use and cached. Column-map expectations (`..._values_
to_be_between` etc.) treat NaN as *missing* and skip it, so finiteness is checked explicitly where
NaN can occur. A zero-row DataFrame validates fine with the pandas datasource: row-wise expectations
pass with `element_count` 0 (column aggregates such as a column max observe None and fail, so none is
used where zero rows are legitimate). Results come back in GX's order, not the suite's; they are
re-sorted by the `order` kept in each expectation's meta.
"""

from vidsearch.quality.checks import (
    SegmentFacts,
    check_detections,
    check_embeddings,
    check_frames,
    check_index,
    check_probe,
    check_segment,
    check_split,
    check_transcript,
    expected_frame_count,
    segment_facts,
    split_tolerance,
)
from vidsearch.quality.config import ENV_VAR, STAGES, QualityConfig, QualityConfigError
from vidsearch.quality.gx import expectation_suite, setup_seconds, warm_up
from vidsearch.quality.report import FailedExpectation, GateResult, enforce, report_markdown, write_report
from vidsearch.quality.text import compression_ratio, longest_repeat, repeated_loop

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
    "check_segment",
    "check_split",
    "check_transcript",
    "compression_ratio",
    "enforce",
    "expectation_suite",
    "expected_frame_count",
    "longest_repeat",
    "repeated_loop",
    "report_markdown",
    "segment_facts",
    "setup_seconds",
    "split_tolerance",
    "warm_up",
    "write_report",
]
