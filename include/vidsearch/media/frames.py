"""Sample frames from a segment at a fixed rate and store them as one bundle per segment.

Sampling rule (exact, and independent of where the split stage cut):

* The grid is global: t_k = k / sample_fps seconds after the video start, k = 0, 1, 2, ...
* For a grid time t_k the sampled frame is the frame ON SCREEN at t_k: the last frame whose
  presentation time is <= t_k (a frame is displayed from its PTS until the next frame's PTS).
* A segment [start_s, end_s) owns exactly the grid times inside it, and the frames on screen at those
  times are always inside the segment file: its frames are displayed from start_s (the PTS of its
  first, key, frame) until end_s (the PTS of the next segment's first frame, or the end of the video,
  or the time limit). So segments never share or miss a sample: the union over segments equals
  sampling the whole video in one go.
* A frame that is on screen at several grid times (sample_fps above the frame rate, or a long frame
  in a VFR video) is kept once. So a frame is selected iff at least one grid time falls in its display
  interval; the result is strictly increasing in time, with about duration * min(sample_fps, fps)
  frames.

Why "on screen at" rather than "first frame at or after t_k": the latter would give the grid times
between the last frame of one segment and the first of the next to a frame that lies in the next
segment, which that segment cannot know without the previous one's last PTS; this rule is decidable
from one segment alone. Both rules agree whenever a grid time coincides with a frame.

Mechanics: one demux-only ffprobe lists the segment's packet PTS; `select_frames` (pure) picks frames;
ffmpeg decodes the segment ONCE with a `select` filter matching those exact integer PTS, so only the
selected frames are rotated (transpose after select; autorotate off) and converted to RGB (the
automatic scaler after the graph), written as rawvideo rgb24 to a pipe; a `trim` ends decoding after
the last selected frame. `showinfo` after `select` reports each output frame's integer PTS, which is
what the bundle records. Timestamps are `pts * time_base - video_start_s`; segment files are Matroska
(1 ms resolution), so `pts_s` is the source PTS rounded to the millisecond. ffmpeg starts together
with ffprobe and reads its filter script from a FIFO once the selection is known, so the probe costs
no wall time beyond ffmpeg's own start-up. Python reads the pipe while a few threads JPEG-encode the
frames already read (and compute the frames gate's per-frame stats, `stats.frame_stats` of the RGB
pixels, when asked for): encoding overlaps decoding, and only a handful of frames are ever in memory,
whatever the segment's length.

Keyframe mode (`sampling="keyframes"`): instead of the grid, every keyframe of the segment with a PTS
in [start_s, end_s) (same start tolerance) is sampled. The decoder skips every other frame
(`-skip_frame nokey`, on slice threads: frame threads would pass each skipped packet between
threads), so only keyframes are decoded at all, and no packet listing is needed (the probe reads the
stream header only); `pts_s` is computed as above. The bundle records the mode
(`FrameBundle.sampling`).

Scene mode (`sampling="scenes"`): every frame whose ffmpeg scene score (`select`'s `scene`: the
change of the mean absolute luma difference between consecutive decoded frames, 0..1) is above
`scene_threshold` (default `records.DEFAULT_SCENE_THRESHOLD`, a run's `IngestParams.scene_threshold`),
plus the fps grid's frames at `sample_fps` as a floor rate (so no two kept frames are more than
1/sample_fps apart, across segments too), plus the segment's first frame. All of it is one ffmpeg
expression over the same single decode (`gte/lt` on the PTS range, `gt(scene,T)` or the grid's
`eq(pts,...)` tree); a `metadata` filter after `select` prints each kept frame's score. A frame is
`scene_start` when its score is above the threshold (as printed, 6 decimals) or it was kept for its
score alone; the video's first frame starts its first scene. The scene score of a segment's first
frame is 0 (nothing decoded before it): a cut exactly at a segment boundary is kept (first frame) but
not marked, and that one frame is the only way a scene bundle depends on where the split cut.

Content rules (every mode, `content.py`): while the frames are encoded, each one's pixel stats and
perceptual hash are computed, and frames are marked in order `blank` or `duplicate_of` the last kept
frame; they stay in the bundle, and the detect+embed worker skips them.

The bundle's format and its readers are in `bundle.py`.
"""

from __future__ import annotations

import dataclasses
import errno
import io
import logging
import math
import os
import re
import tempfile
import time
import zipfile
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from fractions import Fraction
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
from PIL import Image

from vidsearch.errors import InputError, QualityGateError
from vidsearch.media import ffmpeg as ff
from vidsearch.media.bundle import BUNDLE_JSON, member_name
from vidsearch.media.content import ContentFilter, ContentRules, Signature, signature
from vidsearch.media.split import ROTATION_TAG, VIDEO_START_TAG
from vidsearch.media.stats import frame_stats
from vidsearch.records import DEFAULT_SCENE_THRESHOLD, SAMPLING_MODES, FrameBundle, FrameRef, Segment
from vidsearch.stores import storage

log = logging.getLogger(__name__)

JPEG_QUALITY = 90
FRAMES_TIMEOUT_S = 1800.0
# Grid times and PTS are compared with this slack so float noise never flips a decision.
_EPS = 1e-9
# Above this many selected frames the select expression becomes a binary search (if/lt) over the
# PTS list, so evaluating it costs O(log n) per decoded frame instead of O(n).
_FLAT_TERMS = 8
_ZIP_DATE = (2000, 1, 1, 0, 0, 0)  # fixed member dates: same frames, same bytes
# Threads JPEG-encoding frames while ffmpeg decodes (PIL releases the GIL); at most twice as many frames
# are in flight, so extraction holds a few frames whatever the segment's length.
_ENCODE_THREADS = max(1, min(4, os.cpu_count() or 1))
# ffmpeg's decoder threads when sampling the grid.
_FFMPEG_THREADS = max(1, min(16, os.cpu_count() or 1))
# ffmpeg's rawvideo pipe is grown to this (Linux caps unprivileged pipes at 1 MiB by default): a frame
# then crosses in a few large reads instead of ~50 of 64 KiB.
_PIPE_BYTES = 1 << 20
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Linux); Python < 3.10 lacks the name
# The decode runs at `level+info`: every stderr line carries its level ("[info]", "[error]"), so the
# decoder's error lines can be counted in the same run that extracts the frames.
_LOGLEVEL = "level+info"
_SHOWINFO_TB = re.compile(r"\[Parsed_showinfo[^\]]*\]\s+(?:\[info\]\s+)?config in time_base:\s*(\d+)/(\d+)")
_SHOWINFO = re.compile(r"\[Parsed_showinfo[^\]]*\]\s+(?:\[info\]\s+)?n:\s*(\d+)\s+pts:\s*(-?\d+)\s.*?\ss:(\d+)x(\d+)\s")
# What the `metadata=mode=print` filter logs for each frame it passes: its PTS, then its scene score.
_SCENE_LOG = re.compile(
    r"\[Parsed_metadata[^\]]*\]\s+(?:\[info\]\s+)?(?:frame:\s*\d+\s+pts:\s*(-?\d+)|lavfi\.scene_score=([-+0-9.eE]+))"
)
_ERROR_LINE = re.compile(r"\[(?:error|fatal|panic)\]")
_REPEATED = re.compile(r"last message repeated (\d+) times", re.IGNORECASE)


def select_frames(
    pts_s: Sequence[float],
    start_s: float,
    end_s: float,
    sample_fps: float,
    *,
    start_tolerance_s: float = 0.0,
) -> list[int]:
    """Indices of the frames to sample (the rule of the module docstring). Pure.

    `pts_s` are the presentation times (relative to the video start, ascending, distinct) of the
    frames of one segment; only those in [start_s - start_tolerance_s, end_s) are considered (the
    tolerance absorbs rounding of the segment file's timestamps). The first considered frame is on
    screen from start_s, the last until end_s. Returns ascending indices into `pts_s`.
    """
    if not (sample_fps > 0 and math.isfinite(sample_fps)):
        raise InputError(f"sample_fps must be a positive number, got {sample_fps!r}")
    inside = [i for i, p in enumerate(pts_s) if start_s - start_tolerance_s - _EPS <= p < end_s - _EPS]
    chosen = []
    for n, i in enumerate(inside):
        lo = start_s if n == 0 else pts_s[i]
        hi = pts_s[inside[n + 1]] if n + 1 < len(inside) else end_s
        k = math.ceil((lo - _EPS) * sample_fps)  # first grid time >= lo
        if k / sample_fps < hi - _EPS:
            chosen.append(i)
    return chosen


def _select_expr(pts: Sequence[int]) -> str:
    """An ffmpeg expression that is non-zero exactly for the given (ascending) integer PTS."""
    if len(pts) <= _FLAT_TERMS:
        return "(" + "+".join(f"eq(pts,{p})" for p in pts) + ")"
    mid = len(pts) // 2
    return f"if(lt(pts,{pts[mid]}),{_select_expr(pts[:mid])},{_select_expr(pts[mid:])})"


def _rotation_filters(rotation: int) -> list[str]:
    """Filters turning a decoded frame into display orientation (what ffmpeg's autorotate inserts)."""
    return {0: [], 90: ["transpose=clock"], 180: ["hflip", "vflip"], 270: ["transpose=cclock"]}[rotation % 360]


def _probe_segment(path: Path, *, packets: bool = True) -> tuple[dict[str, Any], list[int]]:
    """(video stream, sorted distinct packet PTS in the stream time base); demux only. Without
    `packets`, the stream alone (the list is empty)."""
    doc = ff.ffprobe_json(
        [
            "-select_streams",
            "V:0",
            "-show_streams",
            *(["-show_entries", "packet=pts"] if packets else []),
            *ff.input_args(path),
        ],
        timeout_s=300,
        strip_prefix=ff.file_url(path),
    )
    streams = doc.get("streams") or []
    if not streams:
        raise QualityGateError(f"segment {path.name} has no video stream")
    pts = sorted({int(p["pts"]) for p in doc.get("packets") or [] if p.get("pts") not in (None, "N/A")})
    return streams[0], pts


def _segment_rotation(stream: dict[str, Any]) -> int:
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            return int(round(-float(side["rotation"]) / 90.0)) * 90 % 360
    tags = {k.upper(): v for k, v in (stream.get("tags") or {}).items()}
    try:
        return int(tags.get(ROTATION_TAG, 0)) % 360
    except ValueError:
        return 0


def _segment_video_start(stream: dict[str, Any]) -> float:
    tags = {k.upper(): v for k, v in (stream.get("tags") or {}).items()}
    return ff.parse_float(tags.get(VIDEO_START_TAG)) or 0.0


def _read_frame_into(fh: IO[bytes], buf: bytearray) -> bool:
    """Fill `buf` with the next frame: True, or False at a clean end of stream; a partial frame is an
    error."""
    reader = cast(io.BufferedIOBase, fh)  # a subprocess pipe: buffered, with readinto
    view = memoryview(buf)
    size = len(buf)
    got = 0
    while got < size:
        n = reader.readinto(view[got:])
        if not n:
            break
        got += n
    if got == 0:
        return False
    if got != size:
        raise QualityGateError(f"ffmpeg output ended inside a frame ({got} of {size} bytes)")
    return True


def _grow_pipe(fh: IO[bytes]) -> None:
    try:
        import fcntl

        fcntl.fcntl(fh.fileno(), getattr(fcntl, "F_SETPIPE_SZ", _F_SETPIPE_SZ), _PIPE_BYTES)
    except (ImportError, OSError, ValueError):  # not Linux, or a lower limit: the default pipe works
        pass


def _write_member(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_STORED
    zf.writestr(info, data)


def _encode_frame(
    buf: bytearray, width: int, height: int, with_signature: bool
) -> tuple[bytes, dict[str, Any], Signature | None]:
    """The JPEG bytes of one rgb24 frame, its `stats.frame_stats` entry and (when asked for) its
    `content.signature`."""
    image = Image.frombuffer("RGB", (width, height), buf, "raw", "RGB", 0, 1)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=JPEG_QUALITY)
    del image  # releases its view of `buf`, which the reader reuses for a later frame
    pixels = np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 3)
    stats = frame_stats([pixels])[0]
    sig = signature(pixels) if with_signature else None
    return out.getvalue(), stats, sig


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What one extraction decodes: the segment file's facts and which frames to keep.

    Grid sampling names the selected PTS (`wanted`, ascending, in the stream time base); keyframe
    sampling keeps every frame the decoder gives (only keyframes reach it) with PTS in `pts_range`
    (start inclusive, end exclusive), so it needs no packet listing. Scene sampling (`scene_threshold`
    set) keeps the frames in `pts_range` that are `wanted` (the floor grid and the first frame) or
    score above the threshold.
    """

    time_base: Fraction
    video_start_s: float
    rotation: int
    width: int
    height: int
    wanted: list[int] | None
    pts_range: tuple[int, int] = (0, 0)
    scene_threshold: float | None = None

    @property
    def exact(self) -> bool:
        """Whether the plan names every frame it keeps (grid sampling)."""
        return self.wanted is not None and self.scene_threshold is None

    @property
    def empty(self) -> bool:
        return not self.wanted if self.exact else self.pts_range[0] >= self.pts_range[1]

    def filter_chain(self) -> str:
        """trim ends the graph (and so decoding) after the last frame that can be kept; select keeps
        the frames; showinfo (without checksums: only PTS and size are read) reports what came out."""
        scores: list[str] = []
        if self.exact:
            assert self.wanted is not None
            end, keep = self.wanted[-1] + 1, _select_expr(self.wanted)
        else:
            end, keep = self.pts_range[1], f"gte(pts,{self.pts_range[0]})*lt(pts,{self.pts_range[1]})"
            if self.scene_threshold is not None:
                floor = _select_expr(self.wanted) if self.wanted else "0"
                keep += f"*(gt(scene,{self.scene_threshold!r})+{floor})"
                scores = ["metadata=mode=print:key=lavfi.scene_score"]
        return ",".join(
            [
                f"trim=end_pts={end}",
                f"select='{keep}'",
                *scores,
                *_rotation_filters(self.rotation),
                "showinfo=checksum=0",
            ]
        )


def _plan(
    segment_path: Path,
    segment: Segment,
    sample_fps: float,
    sampling: str,
    time_limit_s: float | None,
    video_start_s: float | None,
    rotation: int | None,
    expected_size: tuple[int, int] | None,
    scene_threshold: float = DEFAULT_SCENE_THRESHOLD,
) -> _Plan:
    """Probe the segment file and choose its frames (the module docstring's rule, or its keyframes)."""
    keyframes = sampling == "keyframes"
    scenes = sampling == "scenes"
    stream, packet_pts = _probe_segment(segment_path, packets=not keyframes)
    time_base = Fraction(str(stream.get("time_base") or "1/1000"))
    start = _segment_video_start(stream) if video_start_s is None else video_start_s
    rot = _segment_rotation(stream) if rotation is None else rotation % 360
    if rot not in (0, 90, 180, 270):
        raise InputError(f"rotation must be a multiple of 90, got {rotation!r}")
    coded_w, coded_h = int(stream.get("width") or 0), int(stream.get("height") or 0)
    width, height = (coded_h, coded_w) if rot in (90, 270) else (coded_w, coded_h)
    if expected_size is not None and (width, height) != tuple(expected_size):
        raise QualityGateError(
            f"{segment.label}: frames would be {width}x{height}, expected {expected_size[0]}x{expected_size[1]}"
        )
    end = segment.end_s if time_limit_s is None else min(segment.end_s, time_limit_s)
    # Half a tick of the file's time base: a first PTS rounded to the millisecond may sit just before
    # the exact start time the split stage took from the source.
    tolerance = float(time_base) / 2
    # The frames with start_s - tolerance <= pts * time_base - start < end (as select_frames
    # considers them), as integer PTS bounds.
    lo = math.ceil((Fraction(segment.start_s - tolerance - _EPS) + Fraction(start)) / time_base)
    hi = math.ceil((Fraction(end - _EPS) + Fraction(start)) / time_base)
    if keyframes:
        return _Plan(time_base, start, rot, width, height, None, (lo, hi))
    # pts * time_base - start, exactly, rounded once (as float(Fraction(...)) would, but integer-only:
    # a long segment has tens of thousands of packets).
    tb_num, tb_den = time_base.numerator, time_base.denominator
    start_num, start_den = Fraction(start).numerator, Fraction(start).denominator
    rel = [(p * tb_num * start_den - start_num * tb_den) / (tb_den * start_den) for p in packet_pts]
    chosen = select_frames(rel, segment.start_s, end, sample_fps, start_tolerance_s=tolerance)
    if scenes:
        # The floor grid, and the segment's first frame (its scene score is 0: nothing precedes it).
        floor = {packet_pts[i] for i in chosen}
        first = next((p for p in packet_pts if lo <= p < hi), None)
        floor |= {first} if first is not None else set()
        return _Plan(time_base, start, rot, width, height, sorted(floor), (lo, hi), scene_threshold)
    return _Plan(time_base, start, rot, width, height, [packet_pts[i] for i in chosen])


class _NothingToDecodeError(Exception):
    """No frame of the segment is selected: ffmpeg, started early, is stopped."""


def extract_frames(
    segment_path: Path,
    segment: Segment,
    sample_fps: float,
    out_path: Path,
    *,
    bundle_uri: str | None = None,
    time_limit_s: float | None = None,
    video_start_s: float | None = None,
    rotation: int | None = None,
    expected_size: tuple[int, int] | None = None,
    sampling: str = "fps",
    stats: list[dict[str, Any]] | None = None,
    decode_errors: list[str] | None = None,
    scene_threshold: float = DEFAULT_SCENE_THRESHOLD,
    content: ContentRules | None = None,
) -> FrameBundle:
    """Sample `segment_path` (the file of `segment`) and write the bundle zip to `out_path`.

    `video_start_s` is the video's first PTS in the file's timeline (`manifest.start_time_s`) and
    `rotation` its clockwise display rotation; None reads each from the segment file: the tags the
    split stage wrote (a display matrix, if the file has one, wins for rotation; no tag: 0). `time_limit_s` ends sampling early (relative
    time). `expected_size` (display width, height, e.g. from the manifest) is checked against the
    decoded frames. The bundle records `bundle_uri` (default: `out_path`). `sampling` is "fps" (the
    grid at `sample_fps`, the module docstring's rule), "keyframes" (every keyframe of the segment,
    nothing else decoded; `sample_fps` is then only recorded) or "scenes" (scene changes scoring above
    `scene_threshold`, plus the `sample_fps` grid as a floor). `content` (default `ContentRules()`)
    holds the thresholds that mark frames blank or repeats (`content.py`). When `stats` is a list, the frames
    gate's per-frame stats are appended to it, one per bundle frame in order: `stats.frame_stats`
    of each frame's RGB pixels as decoded, before JPEG encoding (so the gate never reads the bundle
    back). When `decode_errors` is a list, the error lines ffmpeg reported while decoding (the
    decoder's complaints about a damaged bitstream; a repeated message counts once per repeat) are
    appended to it: the frames gate counts them, so damage is measured without a second decode. They
    cover what was decoded: the segment up to its last sampled frame (keyframe sampling: keyframes).
    Returns the bundle record.

    Raises `InputError` for a bad `sample_fps` or `sampling`, `QualityGateError` when the decoded
    frames do not match what was asked for, `ffmpeg.FFmpegError` when ffmpeg fails.
    """
    if not (isinstance(sample_fps, (int, float)) and math.isfinite(sample_fps) and sample_fps > 0):
        raise InputError(f"sample_fps must be a positive number, got {sample_fps!r}")
    if sampling not in SAMPLING_MODES:
        raise InputError(f"sampling must be one of {', '.join(SAMPLING_MODES)}, got {sampling!r}")
    if not (isinstance(scene_threshold, (int, float)) and 0 < scene_threshold < 1):
        raise InputError(f"scene_threshold must be in (0, 1), got {scene_threshold!r}")
    judge = ContentFilter(content)
    marks: list[tuple[bool, int | None]] = []
    segment_path, out_path = Path(segment_path), Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    measured: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="vidsearch-frames-") as tmp,
        zipfile.ZipFile(out_path, "w", compression=zipfile.ZIP_STORED) as zf,
    ):
        # ffmpeg starts at once and opens the segment while ffprobe reads it; it then waits for its
        # filter script, which names the selected PTS, on a FIFO (it reads the script only after
        # opening its input). The probe's latency is hidden behind ffmpeg's start-up.
        script = Path(tmp) / "filter.txt"
        os.mkfifo(script)
        plan: _Plan | None = None
        try:
            with ff.stream(
                _decode_args(segment_path, script, keyframes_only=sampling == "keyframes"),
                timeout_s=FRAMES_TIMEOUT_S,
                loglevel=_LOGLEVEL,
                strip_prefix=ff.file_url(segment_path),
            ) as proc:
                plan = _plan(
                    segment_path,
                    segment,
                    sample_fps,
                    sampling,
                    time_limit_s,
                    video_start_s,
                    rotation,
                    expected_size,
                    scene_threshold,
                )
                if plan.empty:
                    raise _NothingToDecodeError
                _write_script(script, plan.filter_chain(), proc)
                written = _encode_frames(proc, plan, zf, measured, judge, marks)
            stderr = proc.stderr_text()
            decoded_pts = _decoded_pts(stderr, plan, written)
            starts = _scene_starts(stderr, plan, decoded_pts, first_scene=segment.index == 0)
            errors = error_lines(stderr)
        except _NothingToDecodeError:
            decoded_pts, starts, errors = [], [], []
        if errors:
            log.warning("%s: ffmpeg reported %d decode errors, first: %s", segment.label, len(errors), errors[0])
        assert plan is not None
        missing = len(plan.wanted) - len(decoded_pts) if plan.exact and plan.wanted is not None else 0
        if missing:
            log.warning("%s: %d of %d selected frames did not decode", segment.label, missing, len(plan.wanted or []))
        frames: list[FrameRef] = []
        for index, pts in enumerate(decoded_pts):
            pts_s = float(pts * plan.time_base - Fraction(plan.video_start_s))
            # Rounding of the file's timestamps must not move a frame out of its segment.
            pts_s = round(max(pts_s, segment.start_s, 0.0), 6)
            blank, duplicate_of = marks[index]
            frames.append(
                FrameRef(
                    index=index,
                    pts_s=pts_s,
                    member=member_name(index),
                    blank=blank,
                    duplicate_of=duplicate_of,
                    scene_start=starts[index],
                )
            )
        bundle = FrameBundle(
            video_id=segment.video_id,
            segment_index=segment.index,
            uri=bundle_uri or str(out_path),
            width=plan.width,
            height=plan.height,
            sample_fps=float(sample_fps),
            frames=frames,
            sampling=sampling,
        )
        _write_member(zf, BUNDLE_JSON, bundle.model_dump_json(indent=1).encode())
    if stats is not None:
        stats.extend(measured)
    if decode_errors is not None:
        decode_errors.extend(errors)
    return bundle


def error_lines(stderr: str) -> list[str]:
    """The error-level lines of an ffmpeg run logged with a `level+...` loglevel; "Last message
    repeated N times" after an error line counts as N more."""
    found: list[str] = []
    last_was_error = False
    for line in stderr.splitlines():
        repeated = _REPEATED.search(line)
        if repeated:
            if last_was_error:
                found.extend([found[-1]] * int(repeated.group(1)))
            continue
        last_was_error = bool(_ERROR_LINE.search(line))
        if last_was_error:
            found.append(ff.summarize_stderr(line) or line.strip())
    return found


def _decode_args(path: Path, script: Path, *, keyframes_only: bool) -> list[str]:
    """ffmpeg's argv: decode `path` (only its keyframes, with `keyframes_only`) through the filter
    script, selected frames out as rgb24 on stdout."""
    # Keyframes only: frame threads would hand every skipped packet from thread to thread (7x slower
    # than one thread on 10 s GOPs); slice threads still split a keyframe where the encoder sliced it.
    # Otherwise one decoder thread per core, not ffmpeg's default of one more: the JPEG encoders need
    # some CPU too (on 2 cores, 1 fps from 720p30: 0.79x the decode-only rate instead of 0.75x).
    if keyframes_only:
        decoding = ["-skip_frame", "nokey", "-thread_type", "slice"]
    else:
        decoding = ["-threads", str(_FFMPEG_THREADS)]
    # A damaged bitstream must not end the run ("Conversion failed!" past ffmpeg's default error rate
    # of 2/3): the decoder's errors are counted from stderr and the frames gate names them.
    before = ["-noautorotate", "-max_error_rate", "1", *decoding]
    return [
        "-copyts",  # keep the file's timestamps: select compares them with the packet PTS
        *ff.input_args(path, before=before),
        "-map",
        "0:V:0",
        "-an",
        "-sn",
        "-dn",
        "-filter_script:v",
        str(script),
        "-fps_mode",
        "passthrough",  # rawvideo would otherwise get constant-rate duplicates/drops
        "-pix_fmt",
        "rgb24",
        "-f",
        "rawvideo",
        "pipe:1",
    ]


def _write_script(fifo: Path, text: str, proc: ff.Stream) -> None:
    """Hand `text` to ffmpeg through the FIFO it opens once its input is open.

    Returns without writing when ffmpeg ends first (it failed: its exit status says why); ff.stream's
    watchdog bounds the wait.
    """
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
        if proc.proc.poll() is not None:
            return
        time.sleep(0.002)
    try:
        os.set_blocking(fd, True)
        view = memoryview(text.encode())
        while view:
            view = view[os.write(fd, view) :]
    except BrokenPipeError:
        pass  # ffmpeg stopped reading: it failed, and its exit status says why
    finally:
        os.close(fd)


def _encode_frames(
    proc: ff.Stream,
    plan: _Plan,
    zf: zipfile.ZipFile,
    stats: list[dict[str, Any]],
    judge: ContentFilter,
    marks: list[tuple[bool, int | None]],
) -> int:
    """Read ffmpeg's rgb24 frames, JPEG them into `zf` in order, append each one's `stats.frame_stats`
    entry to `stats` and its content marks (`judge.judge`: blank, duplicate_of) to `marks`; returns how
    many were written.

    Frames are read as soon as ffmpeg writes them, so it never waits on the encoders, and encoded by a
    few threads; buffers are reused once encoded, so a handful of frames are in memory at a time.
    """
    width, height = plan.width, plan.height
    _grow_pipe(proc.stdout)
    written = 0
    with ThreadPoolExecutor(max_workers=_ENCODE_THREADS, thread_name_prefix="vidsearch-jpeg") as pool:
        in_flight: deque[tuple[Future[tuple[bytes, dict[str, Any], Signature | None]], bytearray]] = deque()
        spare: list[bytearray] = []
        hashing = judge.rules.dedupe_distance is not None

        def finish_oldest() -> None:
            nonlocal written
            future, buf = in_flight.popleft()
            jpeg, frame_measure, sig = future.result()
            _write_member(zf, member_name(written), jpeg)
            stats.append(frame_measure)
            marks.append(judge.judge(written, frame_measure, sig))
            written += 1
            spare.append(buf)

        received = 0
        while True:
            buf = spare.pop() if spare else bytearray(width * height * 3)
            if not _read_frame_into(proc.stdout, buf):
                break
            received += 1
            if plan.exact and plan.wanted is not None and received > len(plan.wanted):
                raise QualityGateError(f"ffmpeg returned more frames than the {len(plan.wanted)} selected")
            in_flight.append((pool.submit(_encode_frame, buf, width, height, hashing), buf))
            while in_flight and (len(in_flight) >= 2 * _ENCODE_THREADS or in_flight[0][0].done()):
                finish_oldest()
        while in_flight:
            finish_oldest()
    return written


def _decoded_pts(stderr: str, plan: _Plan, written: int) -> list[int]:
    """The PTS of the frames written, from showinfo, checked against the plan (normally == wanted)."""
    infos = _SHOWINFO.findall(stderr)
    config = _SHOWINFO_TB.search(stderr)
    if config and Fraction(int(config.group(1)), int(config.group(2))) != plan.time_base:
        # select compared PTS in the filter's time base; it must be the stream's for `wanted` to mean
        # the intended frames.
        raise QualityGateError(f"filter time base {config.group(1)}/{config.group(2)} is not {plan.time_base}")
    pts = [int(p) for _, p, _, _ in infos]
    if len(pts) != written:
        raise QualityGateError(f"ffmpeg reported {len(pts)} frames but wrote {written}")
    for _, _, w, h in infos:
        if (int(w), int(h)) != (plan.width, plan.height):
            raise QualityGateError(f"decoded frame is {w}x{h}, expected {plan.width}x{plan.height}")
    if plan.exact:
        kept = set(pts) <= set(plan.wanted or [])
    else:
        kept = all(plan.pts_range[0] <= p < plan.pts_range[1] for p in pts)
    if any(b <= a for a, b in zip(pts, pts[1:])) or not kept:
        raise QualityGateError("decoded frame timestamps do not match the selected ones")
    return pts


def _scene_starts(stderr: str, plan: _Plan, pts: list[int], *, first_scene: bool) -> list[bool]:
    """Per decoded frame (`pts`), whether it starts a scene (see the module docstring); all False
    outside scene sampling. `first_scene`: the segment's first frame is the video's first."""
    if plan.scene_threshold is None:
        return [False] * len(pts)
    scores: dict[int, float] = {}
    current: int | None = None
    for match in _SCENE_LOG.finditer(stderr):
        if match.group(1) is not None:
            current = int(match.group(1))
        elif current is not None:
            scores[current] = float(match.group(2))
            current = None
    floor = set(plan.wanted or [])
    missing = [p for p in pts if p not in scores]
    if missing:
        raise QualityGateError(f"ffmpeg reported no scene score for {len(missing)} kept frames")
    starts = [scores[p] > plan.scene_threshold or p not in floor for p in pts]
    if first_scene and starts:
        starts[0] = True
    return starts


def run_frames(
    segment: Segment,
    sample_fps: float,
    bundle_uri: str,
    time_limit_s: float | None = None,
    video_start_s: float | None = None,
    *,
    rotation: int | None = None,
    expected_size: tuple[int, int] | None = None,
    sampling: str = "fps",
    stats: list[dict[str, Any]] | None = None,
    decode_errors: list[str] | None = None,
    scene_threshold: float = DEFAULT_SCENE_THRESHOLD,
    content: ContentRules | None = None,
    local_path: Path | None = None,
) -> FrameBundle:
    """Sample the stored segment and upload its bundle to `bundle_uri` (see `extract_frames`).

    `local_path`: the segment file already fetched from storage (otherwise it is fetched here)."""
    with (
        nullcontext(local_path) if local_path is not None else storage.local_file(segment.uri, suffix=".mkv") as local,
        tempfile.TemporaryDirectory(prefix="vidsearch-bundle-") as tmp,
    ):
        out = Path(tmp) / "bundle.zip"
        bundle = extract_frames(
            local,
            segment,
            sample_fps,
            out,
            bundle_uri=bundle_uri,
            time_limit_s=time_limit_s,
            video_start_s=video_start_s,
            rotation=rotation,
            expected_size=expected_size,
            sampling=sampling,
            stats=stats,
            decode_errors=decode_errors,
            scene_threshold=scene_threshold,
            content=content,
        )
        storage.upload(out, bundle_uri)
    return bundle
