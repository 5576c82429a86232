"""Probe a local video file into a `VideoManifest`, rejecting files the pipeline cannot process.

What `probe_video` promises: it returns a manifest only for a regular, non-empty file that ffmpeg can
open with an allowed container demuxer (see `ffmpeg.ALLOWED_DEMUXERS`), that has a real video stream
(cover art does not count), a positive duration, and whose first and last second of video decode
without errors. Everything else raises `InputError` with a one-line reason that names the file.

Checks and why:

* ffprobe (`-show_format -show_streams`) reads the container index only. A truncated MP4 whose index
  sits at the front ("faststart", as on the web) probes perfectly and still lacks half its frames, so
  the first and the last ~1 s of the video stream are decoded with `-xerror` (stop at the first decode
  error). The tail check seeks (to the keyframe before the last second), so the cost is about two
  GOPs of decoding whatever the length of the video; a file truncated in the middle of its index or
  corrupt only in the middle is not caught here (the frames stage fails on it later).
* Variable frame rate (documented rule, cheap: no decoding): VFR when the average rate and ffprobe's
  `r_frame_rate` differ by more than 1 % (unless r is twice the average: interlaced field rate), or
  when the intervals between the presentation timestamps of the first 300 video packets (sorted) vary
  by more than 10 % of their median, ignoring jitter of up to 2 ticks of the stream time base.
* Size and frame rate are judged on ffprobe's data, BEFORE anything is decoded: a 1 MB file can
  declare a 16000 x 16000 picture whose decoding takes gigabytes. ffprobe itself opens the decoders
  (to complete the stream parameters) under `-max_pixels` (`ffmpeg.max_decode_pixels()`), and a frame
  refused for its size is rejected as too large; then `before_decode` (the pipeline passes its probe
  quality gate; the default checks `ProbeLimits()`) sees the manifest, and only then is the first
  and last second decoded.
* Display size is the decoded size after rotation: a display matrix (or an old-style `rotate` tag) of
  90 or 270 degrees swaps width and height, as ffmpeg's autorotate does. Sample aspect ratio is not
  applied (frames are used at their stored pixel size).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

from vidsearch.errors import InputError
from vidsearch.media import ffmpeg as ff
from vidsearch.records import VideoManifest

PROBE_TIMEOUT_S = 120.0
DECODE_CHECK_SECONDS = 1.0
VFR_PACKETS = 300
_HASH_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class ProbeLimits:
    """Size and frame-rate bounds applied before decoding when no `before_decode` check is given.

    The defaults are those of the probe quality gate (`quality.QualityConfig`), which the pipeline
    passes as `before_decode` instead, so a configured gate (`VIDSEARCH_QUALITY`) is what applies there.
    """

    min_fps: float = 1.0
    max_fps: float = 240.0
    min_dim: int = 16
    max_dim: int = 8192

    def check(self, manifest: VideoManifest) -> None:
        name = display_name(manifest.source)
        if not (self.min_dim <= manifest.width <= self.max_dim and self.min_dim <= manifest.height <= self.max_dim):
            raise InputError(
                f"video {name!r} is {manifest.width}x{manifest.height}: width and height must be within "
                f"[{self.min_dim}, {self.max_dim}]"
            )
        if not self.min_fps <= manifest.frame_rate <= self.max_fps:
            raise InputError(
                f"video {name!r} has a frame rate of {manifest.frame_rate:g} fps: it must be within "
                f"[{self.min_fps:g}, {self.max_fps:g}]"
            )


def display_name(source: str) -> str:
    """Short, log-safe name of a source: its last path component (never a URL's query string)."""
    path = urlparse(source).path if "://" in source else source
    name = PurePosixPath(path).name
    return name or source[:120]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def primary_video_stream(streams: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The first video stream that is not an attached picture (cover art, thumbnail).

    Same choice as ffmpeg's `-map 0:V:0`, which the split stage uses.
    """
    for stream in streams:
        if stream.get("codec_type") != "video":
            continue
        disposition = stream.get("disposition") or {}
        if disposition.get("attached_pic") or disposition.get("timed_thumbnails"):
            continue
        return stream
    return None


def rotation_cw(stream: dict[str, Any]) -> int:
    """Clockwise rotation needed for display: 0, 90, 180 or 270.

    ffprobe reports the display matrix angle counter-clockwise; ffmpeg's autorotate applies its
    negation, and so do we. Angles that are not a multiple of 90 are ignored, as ffmpeg does.
    """
    angle: float | None = None
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            angle = -float(side["rotation"])
            break
    if angle is None:
        tag = (stream.get("tags") or {}).get("rotate")
        if tag is not None:
            try:
                angle = float(tag)  # old ffmpeg: clockwise degrees
            except ValueError:
                angle = None
    if angle is None:
        return 0
    quarter = round(angle / 90.0)
    if abs(angle - quarter * 90.0) > 1.0:
        return 0
    return int(quarter * 90) % 360


def is_variable_frame_rate(
    avg_rate: float | None,
    nominal_rate: float | None,
    packet_pts_s: Sequence[float] = (),
    tick_s: float = 0.0,
) -> bool:
    """The VFR rule of the module docstring; `packet_pts_s` are presentation times of a run of packets."""
    if avg_rate and nominal_rate:
        ratio = nominal_rate / avg_rate
        if abs(ratio - 1.0) > 0.01 and abs(ratio - 2.0) > 0.02:
            return True
    times = sorted(set(packet_pts_s))
    deltas = [b - a for a, b in zip(times, times[1:]) if b > a]
    if len(deltas) < 3:
        return False
    median = statistics.median(deltas)
    spread = max(deltas) - min(deltas)
    return spread > max(2.0 * tick_s, 0.10 * median)


def _duration(stream: dict[str, Any], fmt: dict[str, Any]) -> float | None:
    duration = ff.parse_float(stream.get("duration"))
    if duration is None:
        tags = stream.get("tags") or {}
        duration = ff.parse_clock(tags.get("DURATION") or tags.get("duration"))
    if duration is None:
        fmt_duration = ff.parse_float(fmt.get("duration"))
        if fmt_duration is not None:
            # Container duration counts from the earliest stream; the video may start later.
            offset = (ff.parse_float(stream.get("start_time")) or 0.0) - (ff.parse_float(fmt.get("start_time")) or 0.0)
            duration = fmt_duration - max(offset, 0.0)
    return duration


def _start_time(stream: dict[str, Any], fmt: dict[str, Any]) -> float:
    for value in (stream.get("start_time"), fmt.get("start_time")):
        start = ff.parse_float(value)
        if start is not None:
            return start
    return 0.0


def _frame_count(stream: dict[str, Any]) -> int | None:
    for value in (stream.get("nb_frames"), (stream.get("tags") or {}).get("NUMBER_OF_FRAMES")):
        try:
            count = int(value) if value is not None else 0
        except (TypeError, ValueError):
            count = 0
        if count > 0:
            return count
    return None


def build_manifest(
    doc: dict[str, Any],
    *,
    source: str,
    content_sha256: str,
    size_bytes: int,
    packet_pts_s: Sequence[float] = (),
) -> VideoManifest:
    """Turn ffprobe's `-show_format -show_streams` JSON into a manifest (pure; raises `InputError`)."""
    name = display_name(source)
    fmt = doc.get("format") or {}
    streams = doc.get("streams") or []
    video = primary_video_stream(streams)
    if video is None:
        kinds = sorted({str(s.get("codec_type")) for s in streams}) or ["none"]
        raise InputError(f"not a video: no video stream in {name!r} (streams: {', '.join(kinds)})")
    coded_w, coded_h = int(video.get("width") or 0), int(video.get("height") or 0)
    if coded_w <= 0 or coded_h <= 0:
        raise InputError(f"not a video: video stream of {name!r} has no frame size")
    duration = _duration(video, fmt)
    if duration is None or not math.isfinite(duration) or duration <= 0:
        raise InputError(f"not a video: {name!r} has no positive duration")
    rotation = rotation_cw(video)
    width, height = (coded_h, coded_w) if rotation in (90, 270) else (coded_w, coded_h)
    frame_count = _frame_count(video)
    avg = ff.parse_rate(video.get("avg_frame_rate"))
    if frame_count and avg and abs(frame_count - duration * avg) > max(2.0, 0.05 * duration * avg):
        frame_count = None  # a header count that contradicts duration and rate (seen in AVI) is unknown
    nominal = ff.parse_rate(video.get("r_frame_rate"))
    frame_rate = avg or (frame_count / duration if frame_count else None) or nominal
    if not frame_rate:
        raise InputError(f"not a video: cannot tell the frame rate of {name!r}")
    tick = ff.parse_rate(video.get("time_base")) or 0.0
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    return VideoManifest(
        video_id=content_sha256[:32],
        source=source,
        content_sha256=content_sha256,
        size_bytes=size_bytes,
        container=str(fmt.get("format_name") or "unknown"),
        duration_s=duration,
        video_codec=str(video.get("codec_name") or "unknown"),
        width=width,
        height=height,
        coded_width=coded_w,
        coded_height=coded_h,
        rotation=rotation,
        frame_rate=frame_rate,
        nominal_frame_rate=nominal or frame_rate,
        variable_frame_rate=is_variable_frame_rate(avg, nominal, packet_pts_s, tick),
        frame_count=frame_count,
        start_time_s=_start_time(video, fmt),
        has_audio=audio is not None,
        audio_codec=str(audio.get("codec_name")) if audio is not None and audio.get("codec_name") else None,
    )


def _packet_times(path: Path) -> list[float]:
    """Presentation times of the first `VFR_PACKETS` video packets (demux only, no decoding)."""
    doc = ff.ffprobe_json(
        [
            "-select_streams",
            "V:0",
            "-read_intervals",
            f"%+#{VFR_PACKETS}",
            "-show_entries",
            "packet=pts_time",
            *ff.input_args(path),
        ],
        timeout_s=PROBE_TIMEOUT_S,
    )
    times = [ff.parse_float(p.get("pts_time")) for p in doc.get("packets") or []]
    values = sorted(t for t in times if t is not None)
    # Packets come in decode order; with B-frames the last few presentation times of the window may
    # be missing (their packets come after it), which would look like a long frame. Drop the tail.
    return values[:-16] if len(values) > 32 else values


def _decoded_frames(path: Path, seek_s: float | None, seconds: float) -> tuple[int, list[str]]:
    """Decode `seconds` of the video stream from `seek_s` (None: the start) with `-xerror`.

    Returns (frames decoded, error lines logged). A fatal decode error (non-zero exit) is returned as
    zero frames and its reason.
    """
    before = ["-noautorotate"]
    if seek_s is not None and seek_s > 0:
        before = ["-ss", f"{seek_s:.6f}", *before]
    try:
        result = ff.ffmpeg(
            [
                "-xerror",
                *ff.input_args(path, before=before),
                "-map",
                "0:V:0",
                "-t",
                f"{seconds:.6f}",
                "-an",
                "-sn",
                "-dn",
                "-fps_mode",
                "passthrough",
                "-f",
                "null",
                "-progress",
                "pipe:1",
                "-nostats",
                "-",
            ],
            timeout_s=PROBE_TIMEOUT_S,
            strip_prefix=ff.file_url(path),
        )
    except ff.FFmpegTimeoutError:
        raise
    except ff.FFmpegError as exc:
        return 0, [exc.reason]
    frames = 0
    for line in result.stdout.decode("ascii", "replace").splitlines():
        if line.startswith("frame="):
            try:
                frames = int(line.split("=", 1)[1])
            except ValueError:
                pass
    # -loglevel error: every stderr line is an error (e.g. the MP4 demuxer's "partial file" when
    # sample data lies beyond the end of a truncated file, which does not fail the run by itself).
    errors = [line for line in result.stderr.splitlines() if ff.summarize_stderr(line)]
    return frames, errors


def _context(line: str) -> str | None:
    """The logging context of an ffmpeg line: "[h264 @ 0x...] msg" -> "h264"; None without one."""
    match = re.match(r"\s*\[([^\]@]+?)\s*@\s*0x[0-9a-fA-F]+\]", line)
    return match.group(1) if match else None


def check_decodable(path: Path, manifest: VideoManifest, format_start_s: float = 0.0) -> None:
    """Decode the first and the last ~1 s of the video stream; `InputError` if either fails.

    First second: any error counts (decoding starts at the true start of the stream). Last second:
    containers without a keyframe index (MPEG-TS) seek to a packet that may not be a keyframe, and the
    decoder rightly complains about the missing references of the first few frames; so there only
    errors from the demuxer (e.g. "partial file", "File ended prematurely") or without a context, a
    fatal decode error, or no decoded frame at all count.
    """
    name = display_name(manifest.source)
    # `-ss` on an input counts from the container's start; the video may start later than that.
    video_offset = max(manifest.start_time_s - format_start_s, 0.0)
    end = video_offset + manifest.duration_s
    for which, seek in (("first", None), ("last", max(end - DECODE_CHECK_SECONDS, 0.0))):
        frames, errors = _decoded_frames(path, seek, DECODE_CHECK_SECONDS)
        if which == "last":
            errors = [e for e in errors if _context(e) in (None, manifest.container)]
        if errors:
            reason = ff.summarize_stderr(errors[-1])
            raise InputError(f"corrupt or truncated video {name!r}: {which} second does not decode ({reason})")
        if frames == 0:
            raise InputError(f"corrupt or truncated video {name!r}: no frame decodes in the {which} second")


def _unreadable_reason(exc: ff.FFmpegError) -> str:
    match = re.search(r"\[(\w+)[^\]]*\] Format not on whitelist", exc.stderr_tail)
    if match:
        return f"has an unsupported format ({match.group(1)})"
    return f"is not a media file ffmpeg can read ({exc.reason})"


def _too_large(name: str, size: tuple[int, int]) -> InputError:
    return InputError(
        f"video {name!r} is too large: a {size[0]}x{size[1]} frame is over the decode limit of "
        f"{ff.max_decode_pixels()} pixels ({ff.MAX_DECODE_PIXELS_ENV})"
    )


def probe_video(
    path: Path, source: str | None = None, *, before_decode: Callable[[VideoManifest], object] | None = None
) -> VideoManifest:
    """Probe, validate and fingerprint a local video file (see the module docstring for the checks).

    `source` is what is recorded in the manifest (what the user gave, with credentials removed:
    `sources.redact_url`); it defaults to `str(path)`. `before_decode` is called with the manifest
    built from ffprobe's data before anything is decoded and rejects it by raising (default:
    `ProbeLimits().check`). `video_id` is the first 32 hex digits of the SHA-256 of the content, so
    the same bytes always get the same id whatever their name.
    """
    path = Path(path)
    source = str(path) if source is None else source
    name = display_name(source)
    if not path.exists():
        raise InputError(f"no such file: {name!r}")
    if not path.is_file():
        raise InputError(f"not a regular file: {name!r}")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"empty file: {name!r} is 0 bytes")
    try:
        doc, stderr = ff.ffprobe_json_stderr(
            ["-show_format", "-show_streams", *ff.input_args(path)],
            timeout_s=PROBE_TIMEOUT_S,
            strip_prefix=ff.file_url(path),
        )
    except ff.FFmpegTimeoutError:
        raise
    except ff.FFmpegError as exc:
        oversized = ff.over_max_pixels(exc.stderr_tail)
        if oversized is not None:
            raise _too_large(name, oversized) from exc
        raise InputError(f"not a video: {name!r} {_unreadable_reason(exc)}") from exc
    oversized = ff.over_max_pixels(stderr)
    if oversized is not None:
        raise _too_large(name, oversized)
    try:
        packet_pts = _packet_times(path)
    except ff.FFmpegTimeoutError:
        raise
    except ff.FFmpegError:
        packet_pts = []  # the VFR hint is best effort; the decode check below judges the file
    manifest = build_manifest(
        doc, source=source, content_sha256=sha256_file(path), size_bytes=size, packet_pts_s=packet_pts
    )
    (before_decode or ProbeLimits().check)(manifest)
    check_decodable(path, manifest, ff.parse_float((doc.get("format") or {}).get("start_time")) or 0.0)
    return manifest
