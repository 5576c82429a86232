"""Split a video into contiguous segments, by stream copy, for parallel frame extraction.

How and why:

* ffmpeg's segment muxer with STREAM COPY (`-c copy`, video stream only: `-map 0:V:0`, i.e. the first
  video stream that is not cover art, the same one the probe describes). Nothing is decoded or
  re-encoded, so splitting costs about as much as copying the file and never changes a pixel.
* A copy can only start a file on a keyframe, so each cut lands on the first keyframe at or after its
  nominal boundary (`k * segment_seconds`). Segments are therefore contiguous and keyframe-aligned,
  and may be longer than nominal when keyframes are sparse (a video with one keyframe every 10 s cut
  every 4 s yields ~10 s segments; one with a single keyframe yields one segment). That is fine: the
  frames stage samples a global time grid and keeps only frames whose timestamps fall in the
  segment's range, so what is sampled does not depend on where the cuts land.
* Timestamps are kept as they are in the source (`-copyts`, `-avoid_negative_ts disabled`), so a
  frame's time relative to the video start is `pts - manifest.start_time_s` in every segment. Segment
  start times come from the muxer's CSV segment list (the PTS of each segment's first packet, a
  keyframe, in the segment file's time base) minus the video start; each segment ends where the next
  begins and the last ends at the video's duration, or at the time limit.
* Files are Matroska: it keeps arbitrary start timestamps (MP4 would need edit lists) at a resolution
  of 1 ms. Matroska in ffmpeg 5.x does not carry the display matrix, so the clockwise rotation is
  written as the stream tag `VIDSEARCH_ROTATION` (`ROTATION_TAG`) for the frames stage, next to the
  video's start time (`VIDSEARCH_VIDEO_START`), so a segment file is self-describing.
* Time limit: the last kept segment ends at the limit (frames after it are never sampled); physically
  it may hold up to one GOP more. ffmpeg stops copying at the first keyframe at or after the limit
  (found by a demux-only ffprobe), so a short limit on a long video does not copy the whole file.

`plan_split` and `segment_bounds` are the pure planning/validation part; `run_split` runs ffmpeg and
uploads the files.
"""

from __future__ import annotations

import csv
import io
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vidsearch.errors import InputError
from vidsearch.media import ffmpeg as ff
from vidsearch.records import Segment, VideoManifest
from vidsearch.stores import storage

ROTATION_TAG = "VIDSEARCH_ROTATION"
VIDEO_START_TAG = "VIDSEARCH_VIDEO_START"
MAX_SEGMENTS = 10_000
SPLIT_TIMEOUT_S = 1800.0
# Cut times from the muxer's list are printed with 6 decimals; starts closer than this to the end of
# the covered range are treated as "at the end".
_EPS = 1e-6
# How far past the time limit to look for the keyframe at which copying may stop.
_KEYFRAME_SEARCH_S = 60.0


@dataclass(frozen=True)
class SplitPlan:
    """What to ask the muxer for, in seconds relative to the video start."""

    end_s: float
    """End of the covered range: the duration, or the time limit when it is shorter."""
    cut_points_s: tuple[float, ...]
    """Nominal cut times, ascending, in (0, end_s]; includes end_s itself when limited."""
    limited: bool
    """True when the time limit cuts the video short."""


def plan_split(duration_s: float, segment_seconds: float, time_limit_seconds: float | None = None) -> SplitPlan:
    """Validate the parameters and plan the nominal cuts. Raises `InputError` on bad parameters."""
    if not isinstance(segment_seconds, (int, float)) or not math.isfinite(segment_seconds) or segment_seconds <= 0:
        raise InputError(f"segment_seconds must be a positive number of seconds, got {segment_seconds!r}")
    if time_limit_seconds is not None and (
        not isinstance(time_limit_seconds, (int, float))
        or not math.isfinite(time_limit_seconds)
        or time_limit_seconds <= 0
    ):
        raise InputError(f"time_limit_seconds must be a positive number of seconds, got {time_limit_seconds!r}")
    if not math.isfinite(duration_s) or duration_s <= 0:
        raise InputError(f"video duration must be positive, got {duration_s!r}")
    limited = time_limit_seconds is not None and time_limit_seconds < duration_s
    end_s = float(time_limit_seconds) if limited else float(duration_s)  # type: ignore[arg-type]
    count = math.ceil(end_s / segment_seconds - 1e-9)
    if count > MAX_SEGMENTS:
        raise InputError(
            f"segment_seconds={segment_seconds:g} would cut {end_s:.1f} s into {count} segments "
            f"(at most {MAX_SEGMENTS})"
        )
    cuts = [k * segment_seconds for k in range(1, count) if k * segment_seconds < end_s - _EPS]
    if limited:
        cuts.append(end_s)
    return SplitPlan(end_s=end_s, cut_points_s=tuple(cuts), limited=limited)


# One mapped task per segment: Airflow's max_map_length.
MAX_MAPPED_SEGMENTS = 1024
# `segment_seconds: auto`: segments long enough that a segment's tasks spend most of their time on work
# (each task has a fixed cost of about a second: start, catalog, gates), short enough that every
# parallel slot gets about `AUTO_WAVES` segments, so the stages of successive segments overlap and a
# retry repeats little. Bounds in seconds of video.
AUTO_MIN_SEGMENT_S = 30.0
AUTO_MAX_SEGMENT_S = 300.0
AUTO_WAVES = 2


def auto_segment_seconds(
    covered_s: float, slots: int, sample_fps: float = 1.0, *, min_segment_s: float | None = None
) -> float:
    """The nominal segment length `segment_seconds: auto` picks for `covered_s` seconds of video.

    `covered_s / (slots * AUTO_WAVES)`, within [AUTO_MIN_SEGMENT_S, AUTO_MAX_SEGMENT_S] scaled by
    1 / max(sample_fps, 1) (more frames per second of video: more work per second, so shorter segments
    amortise as well), and never more than MAX_MAPPED_SEGMENTS segments. `min_segment_s` raises the
    lower bound (and the upper one with it) for executors with a large fixed cost per segment, such as
    a GPU pod per segment. Whole milliseconds; pure.
    """
    if not math.isfinite(covered_s) or covered_s <= 0:
        raise InputError(f"video duration must be positive, got {covered_s!r}")
    if slots < 1:
        raise InputError(f"parallel slots must be at least 1, got {slots!r}")
    if not (math.isfinite(sample_fps) and sample_fps > 0):
        raise InputError(f"sample_fps must be a positive number, got {sample_fps!r}")
    scale = 1.0 / max(sample_fps, 1.0)
    low, high = AUTO_MIN_SEGMENT_S * scale, AUTO_MAX_SEGMENT_S * scale
    if min_segment_s is not None:
        if not (math.isfinite(min_segment_s) and min_segment_s > 0):
            raise InputError(f"min_segment_s must be a positive number, got {min_segment_s!r}")
        low, high = max(low, min_segment_s), max(high, min_segment_s)
    seconds = min(max(covered_s / (slots * AUTO_WAVES), low), high)
    seconds = max(seconds, covered_s / MAX_MAPPED_SEGMENTS)
    return math.ceil(seconds * 1000) / 1000


def segment_bounds(starts_s: Sequence[float], end_s: float) -> list[tuple[float, float]]:
    """(start, end) of each kept segment from the start times of the files the muxer wrote.

    `starts_s` are relative to the video start, one per file in order. Promises: the result covers
    [0, end_s] with no gap or overlap (each end is the next start; the first start is 0; the last end
    is end_s); files starting at or after end_s are dropped (they hold only frames past the time
    limit). Raises `ValueError` if the starts are not increasing.
    """
    if not starts_s:
        raise ValueError("the muxer wrote no segment")
    if any(b <= a for a, b in zip(starts_s, starts_s[1:])):
        raise ValueError(f"segment start times are not increasing: {list(starts_s)}")
    # The first file starts with the first packet, i.e. the video start (up to rounding).
    kept = [0.0] + [s for s in starts_s[1:] if s < end_s - _EPS]
    ends = kept[1:] + [end_s]
    return list(zip(kept, ends))


def parse_segment_list(text: str) -> list[tuple[str, float, float]]:
    """Rows (file name, start, end) of the segment muxer's CSV list; times in the input's timeline."""
    rows = []
    for row in csv.reader(io.StringIO(text)):
        if not row:
            continue
        if len(row) < 3:
            raise ValueError(f"malformed segment list row: {row!r}")
        rows.append((row[0], float(row[1]), float(row[2])))
    return rows


def _first_keyframe_at_or_after(path: Path, at_s: float) -> float | None:
    """PTS (container timeline) of the first video keyframe at or after `at_s`; None if not found soon."""
    doc = ff.ffprobe_json(
        [
            "-select_streams",
            "V:0",
            "-read_intervals",
            f"{at_s:.6f}%+{_KEYFRAME_SEARCH_S:g}",
            "-show_entries",
            "packet=pts_time,flags",
            *ff.input_args(path),
        ],
        timeout_s=120,
    )
    candidates = [
        t
        for p in doc.get("packets") or []
        if "K" in str(p.get("flags", "")) and (t := ff.parse_float(p.get("pts_time"))) is not None
        if t >= at_s - _EPS
    ]
    return min(candidates) if candidates else None


def split_local(
    video_path: Path,
    manifest: VideoManifest,
    plan: SplitPlan,
    out_dir: Path,
) -> list[tuple[Path, float, float]]:
    """Run the segment muxer into `out_dir`; (file, start, end) of each kept segment, relative times."""
    origin = manifest.start_time_s
    times = ",".join(f"{origin + t:.6f}" for t in plan.cut_points_s)
    stop: list[str] = []
    if plan.limited:
        keyframe = _first_keyframe_at_or_after(video_path, origin + plan.end_s)
        if keyframe is not None:
            # Copying stops once packets reach this keyframe (ffmpeg compares decode timestamps,
            # which are <= presentation timestamps, so every frame before the limit is kept).
            stop = ["-to", f"{keyframe:.6f}"]
    listing = out_dir / "segments.csv"
    ff.ffmpeg(
        [
            "-copyts",
            # AVI and raw streams carry no presentation timestamps for B-frames; Matroska needs them.
            *ff.input_args(video_path, before=["-fflags", "+genpts"]),
            "-map",
            "0:V:0",
            "-c",
            "copy",
            "-an",
            "-sn",
            "-dn",
            "-map_metadata",
            "-1",
            "-metadata:s:v:0",
            f"{ROTATION_TAG}={manifest.rotation}",
            "-metadata:s:v:0",
            f"{VIDEO_START_TAG}={manifest.start_time_s!r}",
            "-avoid_negative_ts",
            "disabled",
            *stop,
            "-f",
            "segment",
            "-segment_format",
            "matroska",
            # Without a list the muxer would fall back to its default of a cut every 2 s.
            *(["-segment_times", times] if times else ["-segment_time", "1000000000"]),
            "-reset_timestamps",
            "0",
            "-segment_list",
            ff.file_url(listing),
            "-segment_list_type",
            "csv",
            "-y",
            ff.file_url(out_dir / "seg%04d.mkv"),
        ],
        timeout_s=SPLIT_TIMEOUT_S,
        strip_prefix=ff.file_url(video_path),
    )
    rows = parse_segment_list(listing.read_text())
    # Microsecond rounding: the times are printed with 6 decimals; no float noise in the records.
    bounds = segment_bounds([round(start - origin, 6) for _, start, _ in rows], plan.end_s)
    return [(out_dir / name, start, end) for (name, _, _), (start, end) in zip(rows, bounds)]


def run_split(
    video_path: Path,
    manifest: VideoManifest,
    segment_seconds: float,
    time_limit_seconds: float | None,
    segments_root_uri: str,
) -> list[Segment]:
    """Split `video_path` (described by `manifest`) and upload each segment.

    Promises: segments are numbered 0..n-1, contiguous, cover [0, min(duration, time limit)] (times
    relative to the video start), and segment i is stored at `{segments_root_uri}/seg{i:04d}.mkv`.
    Raises `InputError` for bad parameters, `ffmpeg.FFmpegError` if ffmpeg fails, storage errors as
    `storage` raises them.
    """
    plan = plan_split(manifest.duration_s, segment_seconds, time_limit_seconds)
    segments: list[Segment] = []
    with tempfile.TemporaryDirectory(prefix="vidsearch-split-") as tmp:
        for index, (local, start, end) in enumerate(split_local(Path(video_path), manifest, plan, Path(tmp))):
            segment = Segment(video_id=manifest.video_id, index=index, start_s=start, end_s=end, uri="pending")
            uri = storage.upload(local, storage.join(segments_root_uri, f"{segment.name}.mkv"))
            segments.append(segment.model_copy(update={"uri": uri}))
    return segments
