"""Synthetic videos for tests, the demo and the benchmark, made with ffmpeg's lavfi sources.

Nothing is downloaded. `make_video` draws a few clearly visible, differently coloured boxes moving over
a plain dark background (so a detector has something to find and frames differ from one another),
encodes H.264 (libx264, yuv420p) plus an AAC sine tone into MP4. The other helpers make the awkward
inputs the pipeline must handle: variable frame rate, rotation metadata, audio only, truncated files,
zero-byte, text and random-byte files.

Every maker returns the path it wrote and overwrites an existing file.
"""

from __future__ import annotations

import os
import random
import re
import tempfile
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

from vidsearch.media import ffmpeg as ff

BACKGROUND = "0x1e2a38"

# (colour, width and height as fractions of the frame, x and y expressions in t, W, H, w, h).
# Different speeds and directions so the shapes cross each other now and then.
_SHAPES: tuple[tuple[str, float, float, str, str], ...] = (
    ("0xe53935", 0.14, 0.20, "(W-w)*(0.5+0.45*sin(0.9*t))", "H*0.10"),
    ("0x43a047", 0.22, 0.12, "(W-w)*(0.5+0.45*sin(0.6*t+2))", "H*0.62"),
    ("0xfdd835", 0.08, 0.30, "W*0.72", "(H-h)*(0.5+0.45*cos(1.3*t))"),
    ("0x1e88e5", 0.12, 0.12, "(W-w)*(0.5+0.45*cos(0.7*t+1))", "(H-h)*(0.5+0.45*sin(1.1*t))"),
    ("0xffffff", 0.05, 0.08, "(W-w)*(0.5+0.45*sin(2.1*t+4))", "(H-h)*(0.5+0.45*cos(0.5*t))"),
)


def _even(value: float) -> int:
    """yuv420p needs even dimensions."""
    return max(2, int(round(value / 2.0)) * 2)


def _scene_graph(width: int, height: int, fps: str, duration_s: float) -> tuple[list[str], str]:
    """lavfi inputs and a filter_complex producing `[v]`: moving boxes over a plain background."""
    inputs = ["-f", "lavfi", "-i", f"color=c={BACKGROUND}:s={width}x{height}:r={fps}:d={duration_s}"]
    chains = []
    last = "0:v"
    for i, (colour, fw, fh, x, y) in enumerate(_SHAPES, start=1):
        inputs += ["-f", "lavfi", "-i", f"color=c={colour}:s={_even(width * fw)}x{_even(height * fh)}:r={fps}"]
        out = "v" if i == len(_SHAPES) else f"s{i}"
        # overlay evaluates x/y for every frame (eval=frame is its default); shortest=1 ends the
        # output with the finite background.
        chains.append(f"[{last}][{i}:v]overlay=x='{x}':y='{y}':shortest=1[{out}]")
        last = out
    return inputs, ";".join(chains)


def _x264_args(gop_frames: int | None, crf: int, preset: str) -> list[str]:
    args = ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p"]
    if gop_frames is not None:
        if gop_frames < 1:
            raise ValueError("gop_frames must be >= 1")
        # Fixed GOP: keyframes exactly every gop_frames frames, no extra scene-cut keyframes.
        args += ["-g", str(gop_frames), "-keyint_min", str(gop_frames), "-sc_threshold", "0"]
    return args


def _rotation_cw(path: Path) -> int:
    doc = ff.ffprobe_json(["-show_streams", "-select_streams", "V:0", ff.file_url(path)], timeout_s=60)
    for stream in doc.get("streams", []):
        for side in stream.get("side_data_list", []) or []:
            if "rotation" in side:
                return int(round(-float(side["rotation"]))) % 360
    return 0


def _set_rotation(src: Path, dst: Path, rotate_cw: int) -> None:
    """Remux `src` to `dst` with a display matrix saying "rotate clockwise by rotate_cw to display".

    ffmpeg 5.x writes the matrix from a `rotate` tag on stream copy (and reads the tag as
    counter-clockwise degrees); ffmpeg >= 6 has `-display_rotation` (counter-clockwise) instead. Try
    both and verify with ffprobe, so this works whichever ffmpeg is installed.
    """
    ccw = (-rotate_cw) % 360
    attempts = [
        [*ff.input_args(src), "-map", "0", "-c", "copy", "-metadata:s:v:0", f"rotate={ccw}"],
        [*ff.input_args(src, before=["-display_rotation:v:0", str(ccw)]), "-map", "0", "-c", "copy"],
    ]
    errors = []
    for args in attempts:
        try:
            ff.ffmpeg([*args, "-y", ff.file_url(dst)], timeout_s=120)
        except ff.FFmpegError as exc:
            errors.append(str(exc))
            continue
        if _rotation_cw(dst) == rotate_cw % 360:
            return
        errors.append("rotation not written")
    raise RuntimeError(f"could not write rotation {rotate_cw}: {'; '.join(errors)}")


def make_video(
    path: str | os.PathLike[str],
    duration_s: float = 12.0,
    width: int = 640,
    height: int = 360,
    fps: str = "30000/1001",
    audio: bool = True,
    gop_frames: int | None = None,
    rotate: int | None = None,
    *,
    faststart: bool = True,
    crf: int = 28,
    preset: str = "veryfast",
    timeout_s: float = 600,
) -> Path:
    """Write an H.264/AAC MP4 of moving coloured boxes.

    `fps` is an ffmpeg rate ("30000/1001", "25"); `gop_frames` fixes the keyframe interval (default:
    x264's, up to 250 frames plus scene cuts); `rotate` (0/90/180/270, clockwise) adds a display matrix,
    so the coded frame is width x height and the displayed one is rotated. `faststart` puts the index
    (moov) first, as web-ready files do: a truncated copy then still probes fine and only decoding
    reveals the damage. `timeout_s` bounds the encode (long videos need more than the default).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if duration_s <= 0:
        raise ValueError("duration_s must be > 0")
    if rotate is not None and rotate % 90 != 0:
        raise ValueError("rotate must be a multiple of 90")
    width, height = _even(width), _even(height)
    inputs, graph = _scene_graph(width, height, fps, duration_s)
    maps = ["-map", "[v]"]
    if audio:
        audio_index = len(_SHAPES) + 1
        inputs += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={duration_s}"]
        maps += ["-map", f"{audio_index}:a", "-c:a", "aac", "-b:a", "64k"]
    args = [
        *inputs,
        "-filter_complex",
        graph,
        *maps,
        *_x264_args(gop_frames, crf, preset),
        "-t",
        f"{duration_s}",
        *(["-movflags", "+faststart"] if faststart else []),
        "-y",
    ]
    if not rotate or rotate % 360 == 0:
        ff.ffmpeg([*args, ff.file_url(path)], timeout_s=timeout_s)
        return path
    with tempfile.TemporaryDirectory(prefix="vidsearch-synth-") as tmp:
        plain = Path(tmp) / "plain.mp4"
        ff.ffmpeg([*args, ff.file_url(plain)], timeout_s=timeout_s)
        _set_rotation(plain, path, rotate % 360)
    return path


def make_vfr_video(
    path: str | os.PathLike[str],
    duration_s: float = 6.0,
    width: int = 320,
    height: int = 180,
    audio: bool = False,
) -> Path:
    """Write a variable-frame-rate H.264 MP4: frame intervals alternate 1/20 s and 1/60 s (30 fps avg).

    Timestamps are rewritten with `setpts` on a 1/90000 time base and encoded with `-fps_mode vfr` so
    that ffmpeg neither duplicates nor drops frames to make the rate constant.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = _even(width), _even(height)
    inputs, graph = _scene_graph(width, height, "30", duration_s)
    graph = graph.replace("[v]", "[raw]") + (";[raw]settb=expr=1/90000,setpts='(floor(N/2)/15+mod(N,2)/20)/TB'[v]")
    maps = ["-map", "[v]"]
    if audio:
        inputs += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={duration_s}"]
        maps += ["-map", f"{len(_SHAPES) + 1}:a", "-c:a", "aac", "-b:a", "64k"]
    ff.ffmpeg(
        [
            *inputs,
            "-filter_complex",
            graph,
            *maps,
            *_x264_args(None, 28, "veryfast"),
            "-fps_mode",
            "vfr",
            # Without this the encoder time base is 1/(nominal rate) and the timestamps are rounded
            # back onto a constant-rate grid.
            "-enc_time_base:v",
            "1/90000",
            "-video_track_timescale",
            "90000",
            "-movflags",
            "+faststart",
            "-y",
            ff.file_url(path),
        ],
        timeout_s=300,
    )
    return path


def make_audio_only(path: str | os.PathLike[str], duration_s: float = 3.0) -> Path:
    """An AAC tone in an MP4/M4A container: a valid media file with no video stream."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ff.ffmpeg(
        [
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=440:sample_rate=48000:duration={duration_s}",
            "-c:a",
            "aac",
            "-b:a",
            "64k",
            "-f",
            "mp4",
            "-y",
            ff.file_url(path),
        ],
        timeout_s=120,
    )
    return path


def make_audio_with_cover(path: str | os.PathLike[str], duration_s: float = 3.0) -> Path:
    """Audio plus a cover-art image stream (disposition attached_pic), as music files often carry.

    The cover is a video stream to ffprobe, but not a video: probing must reject this file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vidsearch-synth-") as tmp:
        cover = Path(tmp) / "cover.png"
        ff.ffmpeg(
            ["-f", "lavfi", "-i", "color=c=red:s=64x64:d=1", "-frames:v", "1", "-y", ff.file_url(cover)],
            timeout_s=60,
        )
        ff.ffmpeg(
            [
                "-f",
                "lavfi",
                "-i",
                f"sine=frequency=440:sample_rate=48000:duration={duration_s}",
                "-i",
                ff.file_url(cover),
                "-map",
                "0:a",
                "-map",
                "1:v",
                "-c:a",
                "aac",
                "-b:a",
                "64k",
                "-c:v",
                "png",
                "-disposition:v:0",
                "attached_pic",
                "-f",
                "mp4",
                "-y",
                ff.file_url(path),
            ],
            timeout_s=120,
        )
    return path


def make_truncated(src: str | os.PathLike[str], dst: str | os.PathLike[str], fraction: float = 0.5) -> Path:
    """Copy the first `fraction` of `src`'s bytes to `dst` (an interrupted download or upload)."""
    if not 0 < fraction < 1:
        raise ValueError("fraction must be in (0, 1)")
    data = Path(src).read_bytes()
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data[: max(1, int(len(data) * fraction))])
    return dst


def make_zero_byte(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def make_text_file(path: str | os.PathLike[str]) -> Path:
    """A small text file, e.g. a README mistaken for a video."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("This is not a video.\nJust a few lines of text.\n" * 20, encoding="utf-8")
    return path


def make_corrupt(path: str | os.PathLike[str], size: int = 65536, seed: int = 0) -> Path:
    """`size` pseudo-random bytes (deterministic for a seed): garbage with a video-like name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def frame_interval(fps: str) -> Fraction:
    """Seconds between frames for an ffmpeg rate string ("30000/1001" -> 1001/30000)."""
    return 1 / Fraction(fps)


# ---------------------------------------------------------------------------------------------------
# Real-world-like content the gates must pass, and two kinds of damage they must name.
# ---------------------------------------------------------------------------------------------------


def _encode_scene(
    path: str | os.PathLike[str],
    duration_s: float,
    width: int,
    height: int,
    fps: str,
    post: str = "",
    *,
    preset: str = "veryfast",
    extra: tuple[str, ...] = (),
) -> Path:
    """The moving-boxes scene (no audio) through the extra filters `post` (appended to the graph)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = _even(width), _even(height)
    inputs, graph = _scene_graph(width, height, fps, duration_s)
    if post:
        graph = graph.replace("[v]", "[raw]") + f";[raw]{post}[v]"
    ff.ffmpeg(
        [
            *inputs,
            "-filter_complex",
            graph,
            "-map",
            "[v]",
            *_x264_args(None, 28, preset),
            *extra,
            "-t",
            f"{duration_s}",
            "-movflags",
            "+faststart",
            "-y",
            ff.file_url(path),
        ],
        timeout_s=300,
    )
    return path


def make_fade_video(
    path: str | os.PathLike[str], duration_s: float = 6.0, fade_s: float = 1.5, width: int = 320, height: int = 180
) -> Path:
    """Fades in from black (the first frame is all black) and out to black (so is the last)."""
    out_start = max(0.0, duration_s - fade_s)
    return _encode_scene(
        path, duration_s, width, height, "25", f"fade=t=in:st=0:d={fade_s},fade=t=out:st={out_start}:d={fade_s}"
    )


def make_black_slate_cut(
    path: str | os.PathLike[str], duration_s: float = 6.0, cut_s: float = 3.0, width: int = 320, height: int = 180
) -> Path:
    """A hard cut to a black slate at `cut_s`, mid-segment: every frame after it is all black."""
    return _encode_scene(path, duration_s, width, height, "25", f"drawbox=c=black:t=fill:enable='gte(t,{cut_s})'")


def make_letterboxed(
    path: str | os.PathLike[str], duration_s: float = 4.0, width: int = 320, height: int = 180
) -> Path:
    """A 2.39:1 picture with black bars above and below in a 16:9 frame."""
    inner = _even(width / 2.39)
    return _encode_scene(
        path, duration_s, width, inner, "25", f"pad=w={_even(width)}:h={_even(height)}:x=0:y=(oh-ih)/2:color=black"
    )


def make_static_scene(
    path: str | os.PathLike[str], duration_s: float = 30.0, width: int = 160, height: int = 90
) -> Path:
    """A still scene (flat background, a few fixed boxes) that does not change for `duration_s`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    boxes = ",".join(
        f"drawbox=x=iw*{x}:y=ih*{y}:w=iw*{fw}:h=ih*{fh}:c={colour}:t=fill"
        for (colour, fw, fh, _, _), x, y in zip(_SHAPES[:3], (0.1, 0.45, 0.75), (0.2, 0.55, 0.1))
    )
    ff.ffmpeg(
        [
            "-f",
            "lavfi",
            "-i",
            f"color=c={BACKGROUND}:s={_even(width)}x{_even(height)}:r=25:d={duration_s},{boxes}",
            *_x264_args(None, 28, "ultrafast"),
            "-movflags",
            "+faststart",
            "-y",
            ff.file_url(path),
        ],
        timeout_s=300,
    )
    return path


def make_one_frame(path: str | os.PathLike[str], width: int = 320, height: int = 180) -> Path:
    """A valid video of exactly one frame (25 fps: 0.04 s)."""
    return _encode_scene(path, 1.0, width, height, "25", extra=("-frames:v", "1"))


def make_short_video(
    path: str | os.PathLike[str], duration_s: float = 0.4, width: int = 320, height: int = 180
) -> Path:
    """A video shorter than any segment (default 0.4 s: 10 frames at 25 fps)."""
    return _encode_scene(path, duration_s, width, height, "25")


def make_title_card(path: str | os.PathLike[str], duration_s: float = 3.0, width: int = 320, height: int = 180) -> Path:
    """A title card: a flat dark colour with a few still shapes (a "title" bar and two marks)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shapes = ",".join(
        [
            "drawbox=x=iw*0.2:y=ih*0.42:w=iw*0.6:h=ih*0.12:c=white:t=fill",
            "drawbox=x=iw*0.3:y=ih*0.6:w=iw*0.4:h=ih*0.04:c=0xaaaaaa:t=fill",
            "drawbox=x=iw*0.47:y=ih*0.2:w=iw*0.06:h=ih*0.1:c=0xfdd835:t=fill",
        ]
    )
    ff.ffmpeg(
        [
            "-f",
            "lavfi",
            "-i",
            f"color=c=0x101018:s={_even(width)}x{_even(height)}:r=25:d={duration_s},{shapes}",
            *_x264_args(None, 28, "veryfast"),
            "-movflags",
            "+faststart",
            "-y",
            ff.file_url(path),
        ],
        timeout_s=300,
    )
    return path


def make_damaged_h264(
    path: str | os.PathLike[str],
    duration_s: float = 10.0,
    width: int = 320,
    height: int = 180,
    *,
    at: tuple[float, ...] = (0.4, 0.5),
    span: int = 1500,
    seed: int = 7,
) -> Path:
    """An H.264 MP4 whose bitstream is damaged in the middle: `span` bytes at each fraction `at` of the
    media data are overwritten with random bytes. The index (moov, first: faststart) is intact and the
    first and last seconds (2 s GOPs) are untouched, so the file probes and splits as usual; decoding the damaged stretch makes the decoder report errors.
    """
    path = Path(path)
    _encode_scene(path, duration_s, width, height, "25", extra=("-g", "50"))
    data = bytearray(path.read_bytes())
    mdat = data.find(b"mdat")
    if mdat < 0:
        raise RuntimeError("no mdat box in the encoded file")
    start, end = mdat + 4, len(data)
    rng = random.Random(seed)
    for fraction in at:
        offset = start + int((end - start) * fraction)
        data[offset : offset + span] = rng.randbytes(min(span, end - offset))
    path.write_bytes(bytes(data))
    return path


def make_untimed_ts(
    path: str | os.PathLike[str], duration_s: float = 4.0, width: int = 160, height: int = 120, keep_every: int = 5
) -> Path:
    """An MPEG-TS whose video packets mostly carry no timestamp: the PTS/DTS of every PES header
    except one in `keep_every` is blanked (flags cleared, the bytes turned into stuffing), so ffprobe
    shows pts and dts N/A for most packets.

    (An AVI cannot show this through ffmpeg: its demuxer derives every packet's DTS from the chunk
    count and drops zero-size chunks, so missing timestamps and empty packets never surface.)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ff.ffmpeg(
        [
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=s={_even(width)}x{_even(height)}:r=25:d={duration_s}",
            *_x264_args(25, 28, "veryfast"),
            "-bf",
            "0",
            "-f",
            "mpegts",
            "-y",
            ff.file_url(path),
        ],
        timeout_s=300,
    )
    data = bytearray(path.read_bytes())
    video_pid, seen = 0x100, 0
    for off in range(0, len(data) - 187, 188):
        packet = data[off : off + 188]
        pid = ((packet[1] & 0x1F) << 8) | packet[2]
        if packet[0] != 0x47 or not packet[1] & 0x40 or pid != video_pid:
            continue
        i = 4 + (1 + packet[4] if (packet[3] >> 4) & 2 else 0)
        if packet[i : i + 3] != b"\x00\x00\x01":
            continue
        seen += 1
        if seen % keep_every == 1 or not packet[i + 7] & 0xC0:
            continue
        data[off + i + 7] = packet[i + 7] & 0x3F
        header_len = packet[i + 8]
        data[off + i + 9 : off + i + 9 + header_len] = b"\xff" * header_len
    path.write_bytes(bytes(data))
    return path


# -- scenes: videos with cuts at known times (content-aware sampling) ------------------------------------

# Scene kinds `make_scene_video` understands: a lavfi source (drawn at the video's size and rate), or
# "boxes", the moving boxes of `make_video`. All but "boxes" and "testsrc" are still pictures.
SCENE_SOURCES: dict[str, str] = {
    "black": "color=c=black",
    "grey": "color=c=0x808080",
    "bars": "smptebars",
    "rgb": "rgbtestsrc",
    "yuv": "yuvtestsrc",
    "testsrc": "testsrc",
    "dim": "color=c=black",
}
# Filters drawn over a scene kind's source. "dim": black with a barely lighter left half (pixel std about
# 1.2: blank to the sampler's default, yet above a frames gate set to blank_std_min < 1).
SCENE_FILTERS: dict[str, str] = {"dim": "drawbox=x=0:y=0:w=iw/2:h=ih:color=0x020202:t=fill,"}


def _renumbered(graph: str, offset: int, prefix: str) -> str:
    """`_scene_graph`'s filter graph with its input numbers moved by `offset` and its inner labels
    prefixed (several graphs then fit in one filter_complex)."""
    graph = re.sub(r"\[(\d+):v\]", lambda m: f"[{int(m.group(1)) + offset}:v]", graph)
    return re.sub(r"\[s(\d+)\]", lambda m: f"[{prefix}s{m.group(1)}]", graph)


def make_scene_video(
    path: str | os.PathLike[str],
    scenes: Sequence[tuple[str, float]],
    width: int = 320,
    height: int = 180,
    fps: str = "25",
    *,
    gop_frames: int | None = None,
    crf: int = 20,
    preset: str = "veryfast",
    timeout_s: float = 600,
) -> Path:
    """Write an H.264 MP4 (no audio) of `scenes`, (kind, seconds) pairs played one after another.

    A kind is a key of `SCENE_SOURCES` or "boxes". The cuts lie at the running sums of the durations
    (pick durations that are whole numbers of frames). `gop_frames` fixes the keyframe interval with no
    scene-cut keyframes, so cuts do not land on keyframes unless the interval puts them there.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not scenes:
        raise ValueError("scenes must not be empty")
    width, height = _even(width), _even(height)
    inputs: list[str] = []
    chains: list[str] = []
    labels: list[str] = []
    for n, (kind, seconds) in enumerate(scenes):
        if seconds <= 0:
            raise ValueError("scene durations must be > 0")
        label = f"c{n}"
        if kind == "boxes":
            offset = len(inputs) // 4  # every lavfi input is 4 argv words
            box_inputs, graph = _scene_graph(width, height, fps, seconds)
            inputs += box_inputs
            chains.append(_renumbered(graph, offset, f"b{n}").replace("[v]", f"[{label}raw]"))
            chains.append(f"[{label}raw]format=yuv420p,setsar=1[{label}]")
        elif kind in SCENE_SOURCES:
            source = SCENE_SOURCES[kind]
            source += ":" if "=" in source else "="
            inputs += ["-f", "lavfi", "-i", f"{source}s={width}x{height}:r={fps}:d={seconds}"]
            chains.append(f"[{len(inputs) // 4 - 1}:v]{SCENE_FILTERS.get(kind, '')}format=yuv420p,setsar=1[{label}]")
        else:
            raise ValueError(f"unknown scene kind {kind!r}")
        labels.append(f"[{label}]")
    chains.append(f"{''.join(labels)}concat=n={len(labels)}:v=1:a=0[v]")
    ff.ffmpeg(
        [
            *inputs,
            "-filter_complex",
            ";".join(chains),
            "-map",
            "[v]",
            *_x264_args(gop_frames, crf, preset),
            "-movflags",
            "+faststart",
            "-y",
            ff.file_url(path),
        ],
        timeout_s=timeout_s,
    )
    return path
