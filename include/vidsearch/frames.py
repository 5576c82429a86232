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
automatic scaler after the graph), written as rawvideo rgb24 to a pipe. `showinfo` after `select`
reports each output frame's integer PTS, which is what the bundle records. Timestamps are
`pts * time_base - video_start_s`; segment files are Matroska (1 ms resolution), so `pts_s` is the
source PTS rounded to the millisecond.

Bundle format: ONE uncompressed zip (ZIP_STORED: JPEG does not compress further, and stored members
can be read at random) per segment, holding `000000.jpg`, `000001.jpg`, ... (JPEG, quality 90,
display orientation and size) and `bundle.json`, the `FrameBundle` record. A segment with no frame in
range (possible only when a time limit ends inside it) gives a valid bundle with zero frames.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from . import ffmpeg as ff
from . import storage
from .errors import InputError, QualityGateError
from .records import FrameBundle, FrameRef, Segment
from .split import ROTATION_TAG, VIDEO_START_TAG

log = logging.getLogger(__name__)

BUNDLE_JSON = "bundle.json"
JPEG_QUALITY = 90
FRAMES_TIMEOUT_S = 1800.0
# Grid times and PTS are compared with this slack so float noise never flips a decision.
_EPS = 1e-9
# Above this many selected frames the select expression becomes a binary search (if/lt) over the
# PTS list, so evaluating it costs O(log n) per decoded frame instead of O(n).
_FLAT_TERMS = 8
_ZIP_DATE = (2000, 1, 1, 0, 0, 0)  # fixed member dates: same frames, same bytes
_SHOWINFO_TB = re.compile(r"\[Parsed_showinfo[^\]]*\]\s+config in time_base:\s*(\d+)/(\d+)")
_SHOWINFO = re.compile(r"\[Parsed_showinfo[^\]]*\]\s+n:\s*(\d+)\s+pts:\s*(-?\d+)\s.*?\ss:(\d+)x(\d+)\s")


def member_name(index: int) -> str:
    """Name of frame `index` inside a bundle."""
    return f"{index:06d}.jpg"


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


def _probe_segment(path: Path) -> tuple[dict[str, Any], list[int]]:
    """(video stream, sorted distinct packet PTS in the stream time base); demux only."""
    doc = ff.ffprobe_json(
        ["-select_streams", "V:0", "-show_streams", "-show_entries", "packet=pts", *ff.input_args(path)],
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


def _read_exact(fh: Any, size: int) -> bytes | None:
    """`size` bytes, or None at a clean end of stream; a partial frame is an error."""
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = fh.readinto(view[got:])
        if not n:
            break
        got += n
    if got == 0:
        return None
    if got != size:
        raise QualityGateError(f"ffmpeg output ended inside a frame ({got} of {size} bytes)")
    return bytes(buf)


def _write_member(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_STORED
    zf.writestr(info, data)


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
) -> FrameBundle:
    """Sample `segment_path` (the file of `segment`) and write the bundle zip to `out_path`.

    `video_start_s` is the video's first PTS in the file's timeline (`manifest.start_time_s`) and
    `rotation` its clockwise display rotation; None reads each from the segment file: the tags the
    split stage wrote (a display matrix, if the file has one, wins for rotation; no tag: 0). `time_limit_s` ends sampling early (relative
    time). `expected_size` (display width, height, e.g. from the manifest) is checked against the
    decoded frames. The bundle records `bundle_uri` (default: `out_path`). Returns the bundle record.

    Raises `InputError` for a bad `sample_fps`, `QualityGateError` when the decoded frames do not
    match what was asked for, `ffmpeg.FFmpegError` when ffmpeg fails.
    """
    if not (isinstance(sample_fps, (int, float)) and math.isfinite(sample_fps) and sample_fps > 0):
        raise InputError(f"sample_fps must be a positive number, got {sample_fps!r}")
    segment_path, out_path = Path(segment_path), Path(out_path)
    stream, packet_pts = _probe_segment(segment_path)
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
    rel = [float(p * time_base - Fraction(start)) for p in packet_pts]
    # Half a tick of the file's time base: a first PTS rounded to the millisecond may sit just before
    # the exact start time the split stage took from the source.
    chosen = select_frames(rel, segment.start_s, end, sample_fps, start_tolerance_s=float(time_base) / 2)
    wanted = [packet_pts[i] for i in chosen]

    frames: list[FrameRef] = []
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out_path, "w", compression=zipfile.ZIP_STORED) as zf:
        if wanted:
            decoded_pts = _decode_selected(segment_path, wanted, time_base, rot, width, height, zf)
            missing = len(wanted) - len(decoded_pts)
            if missing:
                log.warning("%s: %d of %d selected frames did not decode", segment.label, missing, len(wanted))
            for index, pts in enumerate(decoded_pts):
                pts_s = float(pts * time_base - Fraction(start))
                # Rounding of the file's timestamps must not move a frame out of its segment.
                pts_s = round(max(pts_s, segment.start_s, 0.0), 6)
                frames.append(FrameRef(index=index, pts_s=pts_s, member=member_name(index)))
        bundle = FrameBundle(
            video_id=segment.video_id,
            segment_index=segment.index,
            uri=bundle_uri or str(out_path),
            width=width,
            height=height,
            sample_fps=float(sample_fps),
            frames=frames,
        )
        _write_member(zf, BUNDLE_JSON, bundle.model_dump_json(indent=1).encode())
    return bundle


def _decode_selected(
    path: Path,
    wanted: Sequence[int],
    time_base: Fraction,
    rotation: int,
    width: int,
    height: int,
    zf: zipfile.ZipFile,
) -> list[int]:
    """Decode `path` once, keep frames whose PTS is in `wanted`, JPEG them into `zf` in order.

    Returns the PTS of the frames written (normally == wanted).
    """
    chain = ",".join([f"select='{_select_expr(wanted)}'", *_rotation_filters(rotation), "showinfo"])
    frame_bytes = width * height * 3
    with tempfile.TemporaryDirectory(prefix="vidsearch-frames-") as tmp:
        script = Path(tmp) / "filter.txt"
        script.write_text(chain)
        args = [
            "-copyts",  # keep the file's timestamps: select compares them with the packet PTS
            *ff.input_args(path, before=["-noautorotate"]),
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
        written = 0
        with ff.stream(args, timeout_s=FRAMES_TIMEOUT_S, loglevel="info", strip_prefix=ff.file_url(path)) as proc:
            while (data := _read_exact(proc.stdout, frame_bytes)) is not None:
                if written >= len(wanted):
                    raise QualityGateError(f"ffmpeg returned more frames than the {len(wanted)} selected")
                image = Image.frombuffer("RGB", (width, height), data, "raw", "RGB", 0, 1)
                buf = io.BytesIO()
                image.save(buf, format="JPEG", quality=JPEG_QUALITY)
                _write_member(zf, member_name(written), buf.getvalue())
                written += 1
        infos = _SHOWINFO.findall(proc.stderr_text())
        config = _SHOWINFO_TB.search(proc.stderr_text())
    if config and Fraction(int(config.group(1)), int(config.group(2))) != time_base:
        # select compared PTS in the filter's time base; it must be the stream's for `wanted` to mean
        # the intended frames.
        raise QualityGateError(f"filter time base {config.group(1)}/{config.group(2)} is not {time_base}")
    pts = [int(p) for _, p, _, _ in infos]
    if len(pts) != written:
        raise QualityGateError(f"ffmpeg reported {len(pts)} frames but wrote {written}")
    for _, _, w, h in infos:
        if (int(w), int(h)) != (width, height):
            raise QualityGateError(f"decoded frame is {w}x{h}, expected {width}x{height}")
    if any(b <= a for a, b in zip(pts, pts[1:])) or not set(pts) <= set(wanted):
        raise QualityGateError("decoded frame timestamps do not match the selected ones")
    return pts


def run_frames(
    segment: Segment,
    sample_fps: float,
    bundle_uri: str,
    time_limit_s: float | None = None,
    video_start_s: float | None = None,
    *,
    rotation: int | None = None,
    expected_size: tuple[int, int] | None = None,
) -> FrameBundle:
    """Sample the stored segment and upload its bundle to `bundle_uri` (see `extract_frames`)."""
    with storage.local_file(segment.uri, suffix=".mkv") as local, tempfile.TemporaryDirectory(
        prefix="vidsearch-bundle-"
    ) as tmp:
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
        )
        storage.upload(out, bundle_uri)
    return bundle


def _open_bundle(zf: zipfile.ZipFile, uri: str) -> FrameBundle:
    try:
        return FrameBundle.model_validate_json(zf.read(BUNDLE_JSON))
    except KeyError as exc:
        raise QualityGateError(f"frame bundle {uri} has no {BUNDLE_JSON}") from exc


def _decode_jpeg(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    return image.convert("RGB")


def read_bundle(uri: str) -> tuple[FrameBundle, list[np.ndarray]]:
    """The bundle record and its frames as RGB uint8 arrays (H x W x 3), in bundle order.

    The whole object is fetched at once (every member is needed). Raises `QualityGateError` for a
    damaged bundle, `FileNotFoundError` when there is none.
    """
    data = storage.read_bytes(uri)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            bundle = _open_bundle(zf, uri)
            members = [zf.read(f.member) for f in bundle.frames]
        # JPEG decoding releases the GIL: a thread per core decodes a bundle several times faster.
        with ThreadPoolExecutor(max_workers=max(1, min(len(members), os.cpu_count() or 1, 16))) as pool:
            arrays = list(pool.map(lambda data: np.array(_decode_jpeg(data), dtype=np.uint8), members))
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise QualityGateError(f"damaged frame bundle {uri}: {exc}") from exc
    return bundle, arrays


def read_frame(uri: str, frame_index: int) -> Image.Image:
    """Frame `frame_index` of the bundle at `uri` as an RGB image, reading only that member.

    The zip's central directory and one stored member are read (ranged reads on S3), so the UI can cut
    crops without fetching the bundle. Raises `IndexError` for an index the bundle does not have.
    """
    with storage.open_uri(uri) as fh:
        try:
            with zipfile.ZipFile(fh) as zf:
                bundle = _open_bundle(zf, uri)
                ref = next((f for f in bundle.frames if f.index == frame_index), None)
                if ref is None:
                    raise IndexError(f"frame {frame_index} not in bundle {uri} ({len(bundle.frames)} frames)")
                image = _decode_jpeg(zf.read(ref.member))
        except zipfile.BadZipFile as exc:
            raise QualityGateError(f"damaged frame bundle {uri}: {exc}") from exc
    image.load()
    return image
