"""The per-stage gates: each turns a stage's typed output into one small DataFrame and validates it;
plus the ffprobe/ffmpeg measurements of segment files the segment gate uses."""

from __future__ import annotations

import logging
import math
import re
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from vidsearch.media import ffmpeg as ff
from vidsearch.quality.config import QualityConfig
from vidsearch.quality.gx import dataframe, validate
from vidsearch.quality.report import GateResult
from vidsearch.quality.text import compression_ratio, longest_repeat
from vidsearch.records import DetectEmbedResult, FrameBundle, Segment, TranscriptResult, VideoManifest

if TYPE_CHECKING:  # pragma: no cover
    pass

log = logging.getLogger(__name__)


SEGMENT_FACTS_TIMEOUT_S = 120.0


class SegmentFacts(BaseModel):
    """What one segment file holds, measured with ffprobe/ffmpeg (`segment_facts`).

    Timestamps are in the file's own timeline (the source container's: the split stage keeps them),
    so `pts - manifest.start_time_s` is the time relative to the video start.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    packet_count: int = Field(ge=0, description="Video packets in the file.")
    keyframe_count: int = Field(0, ge=0)
    first_pts_s: float | None = Field(None, description="Smallest video packet PTS.")
    last_pts_s: float | None = Field(None, description="Largest video packet PTS.")
    frame_interval_s: float | None = Field(None, description="Median interval between frames.")
    max_keyframe_interval_s: float | None = Field(
        None,
        description="Largest distance between consecutive keyframes, counting the last keyframe's "
        "run up to the end of the file (so a one-keyframe file reports its own length).",
    )
    untimed_packet_count: int = Field(0, ge=0, description="Video packets with neither PTS nor DTS.")
    empty_packet_count: int = Field(0, ge=0, description="Zero-size video packets.")
    dts_backwards: int = Field(0, ge=0, description="Packets whose DTS is below the previous packet's.")
    decodable: bool = Field(description="The first video frame decodes.")
    error: str | None = Field(None, description="Why the file could not be read or decoded.")


def _cfg(cfg: QualityConfig | None) -> QualityConfig:
    return cfg if cfg is not None else QualityConfig.from_env()


def check_probe(manifest: VideoManifest, cfg: QualityConfig | None = None) -> GateResult:
    """Duration > 0, a video stream, frame rate in [min_fps, max_fps], size in [min_dim, max_dim]."""
    cfg = _cfg(cfg)
    df = dataframe(
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
    return validate("probe", "video", df, params, cfg)


def split_tolerance(facts: Sequence[SegmentFacts], cfg: QualityConfig | None = None) -> float:
    """The segment gate's tolerance: configured, or the largest keyframe interval measured; >= the floor."""
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
    time_limit_s: float | None,
    cfg: QualityConfig | None = None,
) -> GateResult:
    """The cut as a whole: segments numbered in order, contiguous (no gap or overlap beyond the
    configured tolerance, or its floor), each with a time span, together reaching the end of
    [0, min(duration, time limit)]. A failure fails the run: no segment can be trusted. What each
    segment file holds is gated by `check_segment`, in the segment's own task."""
    cfg = _cfg(cfg)
    tolerance = split_tolerance((), cfg)
    covered = manifest.duration_s if not time_limit_s else min(manifest.duration_s, time_limit_s)
    prev_end = [0.0] + [s.end_s for s in segments[:-1]]
    df = dataframe(
        {
            "segment": ("object", [s.name for s in segments]),
            "index": ("int64", [s.index for s in segments]),
            "position": ("int64", list(range(len(segments)))),
            "start_s": ("float64", [s.start_s for s in segments]),
            "end_s": ("float64", [s.end_s for s in segments]),
            "gap_s": ("float64", [s.start_s - p for s, p in zip(segments, prev_end)]),
            "length_s": ("float64", [s.end_s - s.start_s for s in segments]),
        }
    )
    params = {
        "tolerance_s": tolerance,
        "neg_tolerance_s": -tolerance,
        "end_min_s": covered - tolerance,
        "end_max_s": covered + tolerance,
    }
    return validate("split", "video", df, params, cfg)


def check_segment(
    manifest: VideoManifest, segment: Segment, facts: SegmentFacts, cfg: QualityConfig | None = None
) -> GateResult:
    """One segment file (`facts`, see `segment_facts`): it holds video packets, its first frame
    decodes, its timestamps match the segment's range within one keyframe interval, and its
    container timing is sound (packets without timestamps and empty packets within their
    tolerances, DTS never backwards). A failure quarantines this segment only."""
    cfg = _cfg(cfg)
    tolerance = split_tolerance([facts], cfg)
    start = (facts.first_pts_s - manifest.start_time_s) if facts.first_pts_s is not None else float("nan")
    last = (facts.last_pts_s - manifest.start_time_s) if facts.last_pts_s is not None else float("nan")
    df = dataframe(
        {
            "segment": ("object", [segment.name]),
            "packet_count": ("int64", [facts.packet_count]),
            "decodable": ("bool", [bool(facts.decodable)]),
            "start_offset_s": ("float64", [start - segment.start_s]),
            # The last packet's PTS is where the last frame starts; it is displayed for one frame
            # more, so a file that holds every frame falls short of the segment end by one frame
            # (a one-frame video: by its whole duration). That frame is subtracted before the
            # tolerance applies.
            "end_excess_s": ("float64", [segment.end_s - last - _last_frame_s(facts, segment)]),
            "untimed_packet_fraction": ("float64", [_fraction(facts.untimed_packet_count, facts)]),
            "empty_packet_fraction": ("float64", [_fraction(facts.empty_packet_count, facts)]),
            "dts_backwards": ("int64", [facts.dts_backwards]),
        }
    )
    params = {
        "tolerance_s": tolerance,
        "neg_tolerance_s": -tolerance,
        "max_untimed_packet_fraction": cfg.max_untimed_packet_fraction,
        "max_empty_packet_fraction": cfg.max_empty_packet_fraction,
    }
    return validate("segment", segment.name, df, params, cfg)


def _last_frame_s(facts: SegmentFacts, segment: Segment) -> float:
    """How long the segment file's last frame is displayed: the file's median frame interval (the
    nominal rate is no better than the file's own spacing); a file with one frame (no interval to
    measure) shows it for the whole segment."""
    if facts.frame_interval_s:
        return facts.frame_interval_s
    return max(0.0, segment.end_s - segment.start_s)


def _fraction(count: int, facts: SegmentFacts) -> float:
    return count / facts.packet_count if facts.packet_count else 0.0


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


def check_frames(
    segment: Segment,
    bundle: FrameBundle,
    stats: Sequence[Mapping[str, Any]],
    sample_fps: float,
    time_limit_s: float | None,
    cfg: QualityConfig | None = None,
    *,
    source_fps: float | None = None,
    decoder_errors: int | Sequence[str] = 0,
) -> GateResult:
    """Frame count ~ (segment duration clipped to the time limit) x sample_fps (within the larger of
    frame_count_abs_tol frames and frame_count_rel_tol), timestamps strictly increasing inside
    [start, end), one frame size equal to the bundle's, no undecodable frame, at most
    max_decoder_errors decoder errors (`decoder_errors`: the count, or the error lines that
    `frames.extract_frames(decode_errors=...)` collected while decoding the segment).

    Pixel values are content, not damage: black, flat or static frames pass (`stats` "mean"/"std"
    are not checked here).

    `stats[i]` describes `bundle.frames[i]` (`frame_stats` of its pixels: as extracted,
    `frames.extract_frames(stats=...)`, or of `read_bundle`'s arrays). `source_fps` (the video's frame
    rate), when given, caps the expected rate: a 5 fps video sampled at 10 fps yields 5 frames a second.
    A keyframe or scene bundle (`bundle.sampling` "keyframes" or "scenes") has no fixed grid count: its
    count must be at least 1 (a segment starts on a keyframe; a scene bundle keeps its first frame) and
    at most the range's frame count at `source_fps` (no upper bound without it).
    """
    cfg = _cfg(cfg)
    if len(stats) != len(bundle.frames):
        raise ValueError(f"{len(stats)} frame stats for {len(bundle.frames)} frames in the bundle")
    count_min, count_max = expected_frame_count(segment, sample_fps, time_limit_s, cfg, source_fps=source_fps)
    end = segment.end_s if not time_limit_s else min(segment.end_s, time_limit_s)
    end = max(end, segment.start_s)  # a limit before the segment: an empty range (GX rejects min > max)
    if bundle.sampling in ("keyframes", "scenes"):
        count_min = 1 if end > segment.start_s else 0
        count_max = (
            expected_frame_count(segment, source_fps, time_limit_s, cfg, source_fps=source_fps)[1]
            if source_fps
            else 2**31 - 1
        )
        count_max = max(count_max, count_min)

    n_errors = decoder_errors if isinstance(decoder_errors, int) else len(decoder_errors)
    df = dataframe(
        {
            "frame": ("int64", [f.index for f in bundle.frames]),
            "pts_s": ("float64", [f.pts_s for f in bundle.frames]),
            "decoded": ("bool", [bool(s.get("decoded", True)) for s in stats]),
            "size": ("object", [f"{int(s.get('w') or 0)}x{int(s.get('h') or 0)}" for s in stats]),
            # Segment-wide: the count sits on the first row so the column sum is the count.
            "decoder_errors": ("int64", [n_errors if i == 0 else 0 for i in range(len(bundle.frames))]),
        }
    )
    params = {
        "count_min": count_min,
        "count_max": count_max,
        "start_s": segment.start_s,
        "end_s": end,
        "bundle_size": [f"{bundle.width}x{bundle.height}"],
        "max_decoder_errors": cfg.max_decoder_errors,
    }
    return validate("frames", segment.name, df, params, cfg)


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
    df = dataframe(
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
    return validate("detections", f"seg{result.segment_index:04d}", df, params, cfg)


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
    df = dataframe(
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
    return validate("embeddings", f"seg{result.segment_index:04d}", df, params, cfg)


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
    df = dataframe(
        {
            "object_id": ("object", ids),
            "pg_minus_wv": ("int64", [int(i in pg) - int(i in wv) for i in ids]),
            "only_in_postgres": ("object", [i if i in pg and i not in wv else None for i in ids]),
            "only_in_weaviate": ("object", [i if i in wv and i not in pg else None for i in ids]),
        }
    )
    return validate("index", segment_name, df, {}, cfg)


def check_transcript(result: TranscriptResult, cfg: QualityConfig | None = None) -> GateResult:
    """One segment's transcript, one row per chunk: each chunk of the result's video and segment,
    with finite times, starting inside its clip and ending by the clip end, end >= start, its midpoint
    (which decides the segment that owns it) inside the segment, starts non-decreasing, unique ids,
    non-empty text without a decoding loop (`text.repeated_loop`: no 1-4 word n-gram repeated more
    than transcript_max_repeats times in a row; compression ratio within
    transcript_max_compression_ratio), avg_logprob finite and <= 0 where recorded, and language
    codes (chunk's and result's, where given) of 2-3 lowercase letters. Every time bound allows
    transcript_time_tolerance_s.

    Zero chunks pass, `speech_likely` or not: Whisper emits nothing for noise, music or a quiet room.
    """
    cfg = _cfg(cfg)
    tol = cfg.transcript_time_tolerance_s
    chunks = result.chunks
    previous = [None, *(c.start_s for c in chunks[:-1])]
    repeats = [longest_repeat(c.text)[0] for c in chunks]
    clip_lo = result.clip_start_s - tol
    seg_lo = result.segment_start_s - tol
    df = dataframe(
        {
            "chunk": ("int64", list(range(len(chunks)))),
            "chunk_id": ("object", [c.chunk_id for c in chunks]),
            "same_segment": (
                "bool",
                [c.video_id == result.video_id and c.segment_index == result.segment_index for c in chunks],
            ),
            "times_finite": ("bool", [math.isfinite(c.start_s) and math.isfinite(c.end_s) for c in chunks]),
            "start_s": ("float64", [c.start_s for c in chunks]),
            "end_s": ("float64", [c.end_s for c in chunks]),
            "midpoint_s": ("float64", [(c.start_s + c.end_s) / 2 for c in chunks]),
            # NaN compares False: a NaN start fails here too, not only in times_finite.
            "start_after_previous": ("bool", [p is None or c.start_s >= p for c, p in zip(chunks, previous)]),
            "text": ("object", [c.text.strip() for c in chunks]),
            "repeat_count": ("int64", repeats),
            "compression_ratio": ("float64", [round(compression_ratio(c.text.strip()), 3) for c in chunks]),
            "avg_logprob_finite": ("bool", [c.avg_logprob is None or math.isfinite(c.avg_logprob) for c in chunks]),
            "avg_logprob": ("float64", [math.nan if c.avg_logprob is None else c.avg_logprob for c in chunks]),
            "language": ("object", [c.language for c in chunks]),
            "result_language": ("object", [result.language for _ in chunks]),
        }
    )
    params = {
        "clip_start_min_s": clip_lo,
        # max(): GX rejects min > max; a result with inverted bounds fails on its chunks instead.
        "clip_end_max_s": max(result.clip_end_s + tol, clip_lo),
        "segment_start_min_s": seg_lo,
        "segment_end_max_s": max(result.segment_end_s + tol, seg_lo),
        "max_repeats": cfg.transcript_max_repeats,
        "max_compression_ratio": cfg.transcript_max_compression_ratio,
    }
    return validate("transcript", f"seg{result.segment_index:04d}", df, params, cfg)


# ---------------------------------------------------------------------------------------------------
# Segment facts (ffprobe / ffmpeg)
# ---------------------------------------------------------------------------------------------------


def segment_facts(path: Path, *, timeout_s: float = SEGMENT_FACTS_TIMEOUT_S) -> SegmentFacts:
    """Measure one segment file: video packets (count, first/last PTS, keyframe spacing) by demuxing
    only (`ffprobe -show_packets`) with the damage they show (packets with no timestamp at all,
    zero-size packets, DTS going backwards), and whether its first frame decodes (`ffmpeg -frames:v 1
    -f null`). Decoder errors over the whole segment are counted where it is decoded anyway (the
    frames stage), not here.

    A file ffprobe/ffmpeg cannot read gives facts that fail the split gate (`error` says why), not an
    exception; a timeout (`FFmpegTimeoutError`, transient) or a missing ffmpeg still raises.
    """
    path = Path(path)
    source = ff.file_url(path)
    try:
        doc = ff.ffprobe_json(
            [
                "-select_streams",
                "V:0",
                "-show_entries",
                "packet=pts_time,dts_time,size,flags",
                *ff.input_args(path),
            ],
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
    untimed = sum(1 for p in packets if p.get("pts_time") in (None, "N/A") and p.get("dts_time") in (None, "N/A"))
    empty = sum(1 for p in packets if str(p.get("size", "")).strip() == "0")
    dts = [t for p in packets if (t := ff.parse_float(p.get("dts_time"))) is not None]
    backwards = sum(1 for a, b in zip(dts, dts[1:]) if b < a)
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
        untimed_packet_count=untimed,
        empty_packet_count=empty,
        dts_backwards=backwards,
        decodable=decodable,
        error=error,
    )


_PROGRESS_FRAME = re.compile(rb"^frame=\s*(\d+)\s*$", re.MULTILINE)


def _first_frame_decodes(path: Path, timeout_s: float) -> tuple[bool, str | None]:
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
